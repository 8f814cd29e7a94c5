"""A head that does not come up says why: the error lines of its dashboard's and agent's logs."""

from __future__ import annotations

from pathlib import Path

from cluster.local import startup_errors


def test_the_logs_error_lines_are_quoted_and_no_logs_name_where_to_look(tmp_path: Path) -> None:
    logs = tmp_path / "session_2026-11-29_10-00-00_000000_1" / "logs"
    logs.mkdir(parents=True)
    (tmp_path / "session_latest").symlink_to(logs.parent)
    (logs / "dashboard_agent.log").write_text("INFO starting\nERROR [Errno 98] error while attempting to bind on address "
                                              "('127.0.0.1', 52365): address already in use\nINFO bye\n")
    (logs / "dashboard.log").write_text("INFO all fine\n2026-11-29 18:43:52,179\tINFO http_server_head.py:499 -- "
                                        "<ResourceRoute [GET] <PlainResource  /task/traceback> -> error_handler>\n")
    (logs / "dashboard_agent.err").write_text("Traceback (most recent call last):\n  File \"agent.py\", line 1\n"
                                              "OSError: [Errno 98] Address already in use\n")
    quoted = startup_errors(tmp_path)
    assert "dashboard_agent.log: ERROR [Errno 98]" in quoted and "52365" in quoted
    assert "INFO" not in quoted and "agent.py" not in quoted
    assert "dashboard_agent.err: Traceback" in quoted and "dashboard_agent.err: OSError: [Errno 98]" in quoted
    assert startup_errors(tmp_path / "elsewhere") == f"the session's logs: {tmp_path / 'elsewhere' / 'session_latest' / 'logs'}"

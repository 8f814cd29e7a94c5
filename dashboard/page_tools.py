"""What every page shares: the current settings, and turning a missing table into a message instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from dashboard.lab_data import LabUnavailable
from dashboard.settings import DashboardSettings

T = TypeVar("T")


def settings() -> DashboardSettings:
    """The settings the entry page read at the start of the session (flags, else environment)."""
    return st.session_state["settings"]


def or_stop(read: Callable[[], T]) -> T:
    """``read()``, or an info box with its reason and the end of this page's run."""
    try:
        return read()
    except LabUnavailable as reason:
        st.info(str(reason))
        st.stop()
        raise  # st.stop() raises; this keeps type checkers content

"""DPM-Solver++(2M) SDE against DDIM, DPM-Solver++(2M) and DDPM on one stored model: FD / floor (VAE, N images) and seconds.

    python bench/bench_sde_sampler.py --lab LAB [--model unet] [--n 500] [--batch 250] [--ddpm]

Does the SDE solver close the gap between the few-step samplers (DDIM-50, DPM-Solver++-20)
and ancestral DDPM over all T levels at 50 network evaluations or fewer? ``--ddpm`` adds
DDPM-T, which takes most of an hour on a CPU. Scoring and timing are bench_samplers.py's.
"""

from __future__ import annotations

import argparse

from bench_samplers import add_model_flags, parse_setting, score_settings  # beside this script

SETTINGS = ["ddim-50", "ddim-50@0.5", "dpmpp2m-20", "dpmpp2m_sde-20@1", "dpmpp2m_sde-30@1", "dpmpp2m_sde-50@1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_flags(parser, 500)
    parser.add_argument("--ddpm", action="store_true", help="also DDPM over all T levels (slow on a CPU)")
    args = parser.parse_args()
    settings = [parse_setting(s) for s in (["ddpm-T"] if args.ddpm else []) + SETTINGS]
    rows = score_settings(args, settings)
    print("| setting | network evaluations | FD | FD / floor [95% interval] | seconds |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['steps']} | {row['fd']:.3f} | {row['ratio']:.2f} [{row['ratio_low']:.2f}, "
              f"{row['ratio_high']:.2f}] | {row['seconds']:,.1f} |")


if __name__ == "__main__":
    main()

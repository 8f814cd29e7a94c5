"""What scoring 8-bit images changes: one model's samples scored in the VAE embedding as floats and quantized to 8 bits.

    .venv/bin/python bench/bench_quantization.py --lab lab --model unet --n 1000 --sampler ddim --steps 20

The lab scores quantized samples (``diffusion.metrics.scoring.Scorer``, as clean-fid does): the
real digits are 8-bit, and a float sample can hold what no stored image can.
"""

from __future__ import annotations

import argparse

from diffusion.core.device import pick_device
from diffusion.core.samplers import SamplerSetting, sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.embeddings.loading import load_embedder
from diffusion.lab.datasets import load_real_sets
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.metrics.scoring import Scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", required=True)
    parser.add_argument("--model", default="unet")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eta", type=float, default=None, help="default: the sampler's own")
    parser.add_argument("--seeds", type=int, default=2, help="sample seeds: the change against the seed-to-seed spread")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    store = LabStore(args.lab)
    stored = ModelRegistry(store).load_denoiser(args.model, device)
    schedule = NoiseSchedule.from_config(stored.run.diffusion).to(device)
    real = load_real_sets(stored.run.data.dataset, store)
    scorer = Scorer(load_embedder("vae", store, device), real.test, real.pool)
    setting = SamplerSetting(args.sampler, args.steps, args.eta).resolve(schedule.timesteps)  # eta None: the sampler's own
    print(f"# {args.model}, {setting.label} (eta {setting.eta:g}), N = {scorer.size(args.n)}, VAE embedding")
    print("| seed | FD / floor, float samples | FD / floor, 8-bit samples | change |\n|---|---|---|---|")
    for seed in range(args.seeds):
        images = sample(stored.model, schedule, args.n, setting, seed=seed)
        raw, quantized = scorer.score(images, kid=False, quantize=False), scorer.score(images, kid=False)
        print(f"| {seed} | {raw.ratio:.3f} [{raw.ratio_low:.2f}, {raw.ratio_high:.2f}] | {quantized.ratio:.3f} "
              f"[{quantized.ratio_low:.2f}, {quantized.ratio_high:.2f}] | {quantized.ratio / raw.ratio - 1:+.2%} |", flush=True)


if __name__ == "__main__":
    main()

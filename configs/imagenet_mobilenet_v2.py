r"""ImageNet, MobileNet-v2 (width 1.0): the paper's two-stage recipe (Talebi & Milanfar 2021).

    python -m learned_resize.main --config=configs/imagenet_mobilenet_v2.py \
        --workdir=gs://BUCKET/mnv2

Stages `baseline` (bilinear 224, from scratch) and `learned` (resizer 448 -> 224, joint
fine-tuning): the recipe and its overrides are in `learned_resize/imagenet_recipe.py`.
Run one stage with --stages=learned; pick another resizer input with
--config.stages.learned.input_size='(368, 368)' (the paper tries 224, 256, 320, 368, 448).
Expected: the paper reports a gain from the learned resizer for MobileNet-v2, but
PAPERS.md has no figures for it; compare the two stages in `workdir/results.md`. For
orientation, torchvision's reference weights (300 epochs, its own recipe) reach 71.9%
top-1; 90 epochs of this recipe will land lower. At 224 the resizer (0.99 GMACs) costs
more than the network (0.30 GMACs): the paper's point is accuracy per input, not FLOPs.
Cost (`python -m learned_resize.flops`, XLA cost analysis, batch 1, eval mode):
0.72 -> 2.84 GFLOPs per image (XLA; 2 x GMACs: 0.60 -> 2.58).
Time (baseline + learned): TPU v4-8 8-9 min + 7-8 min; 8x A100 3-4 min + 3-4 min:
a compute-bound lower bound at 40-50% MFU (method and caveats: `learned_resize/flops.py`).
Needs TFDS `imagenet2012` prepared under --config.data.data_dir (see README).
"""

from learned_resize import imagenet_recipe


def get_config():
    return imagenet_recipe.imagenet_config("mobilenet_v2")

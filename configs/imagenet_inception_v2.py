r"""ImageNet, Inception-v2 (BN-Inception): the paper's two-stage recipe (Talebi & Milanfar 2021).

    python -m learned_resize.main --config=configs/imagenet_inception_v2.py \
        --workdir=gs://BUCKET/inc2

Stages `baseline` (bilinear 224, from scratch) and `learned` (resizer 448 -> 224, joint
fine-tuning): the recipe and its overrides are in `learned_resize/imagenet_recipe.py`.
Run one stage with --stages=learned; pick another resizer input with
--config.stages.learned.input_size='(368, 368)' (the paper tries 224, 256, 320, 368, 448).
Expected: the paper reports a gain from the learned resizer for Inception-v2, but
PAPERS.md has no figures for it; compare the two stages in `workdir/results.md`. For
orientation, TF-slim's reference checkpoint reaches 73.9% top-1 / 91.8% top-5.
Cost (`python -m learned_resize.flops`, XLA cost analysis, batch 1, eval mode):
3.78 -> 5.90 GFLOPs per image (XLA; 2 x GMACs: 3.86 -> 5.84).
Time (baseline + learned): TPU v4-8 40-49 min + 14-17 min; 8x A100 17-22 min + 6-8 min:
a compute-bound lower bound at 40-50% MFU (method and caveats: `learned_resize/flops.py`).
Needs TFDS `imagenet2012` prepared under --config.data.data_dir (see README).
"""

from learned_resize import imagenet_recipe


def get_config():
    return imagenet_recipe.imagenet_config("inception_v2")

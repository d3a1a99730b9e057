r"""ImageNet, ResNet-50 (v1.5): the paper's two-stage recipe (Talebi & Milanfar 2021, sec. 4).

    python -m learned_resize.main --config=configs/imagenet_resnet50.py --workdir=gs://BUCKET/r50

Stages `baseline` (bilinear 224, from scratch) and `learned` (resizer 448 -> 224, joint
fine-tuning): the recipe and its overrides are in `learned_resize/imagenet_recipe.py`.
Run one stage with --stages=learned; pick another resizer input with
--config.stages.learned.input_size='(368, 368)' (the paper tries 224, 256, 320, 368, 448).
Expected (paper, second-hand figures in PAPERS.md): top-1 error 24.7% (baseline) ->
23.0% (learned, resizer input 368: --config.stages.learned.input_size='(368, 368)').
Cost (`python -m learned_resize.flops`, XLA cost analysis, batch 1, eval mode):
8.13 -> 10.25 GFLOPs per image (XLA; 2 x GMACs: 8.18 -> 10.16).
Time (baseline + learned): TPU v4-8 1.4-1.8 h + 24-30 min; 8x A100 38-47 min + 11-13 min:
a compute-bound lower bound at 40-50% MFU (method and caveats: `learned_resize/flops.py`).
Needs TFDS `imagenet2012` prepared under --config.data.data_dir (see README).
"""

from learned_resize import imagenet_recipe


def get_config():
    return imagenet_recipe.imagenet_config("resnet50")

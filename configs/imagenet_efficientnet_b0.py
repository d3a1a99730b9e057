r"""ImageNet, EfficientNet-B0: the paper's two-stage recipe (Talebi & Milanfar 2021, sec. 4).

    python -m learned_resize.main --config=configs/imagenet_efficientnet_b0.py \
        --workdir=gs://BUCKET/effb0

Stages `baseline` (bilinear 224, from scratch) and `learned` (resizer 448 -> 224, joint
fine-tuning): the recipe and its overrides are in `learned_resize/imagenet_recipe.py`.
Run one stage with --stages=learned; pick another resizer input with
--config.stages.learned.input_size='(368, 368)' (the paper tries 224, 256, 320, 368, 448).
Expected: the paper mentions EfficientNets without figures in PAPERS.md; compare the
two stages in `workdir/results.md`. For orientation, EfficientNet-B0 reaches about 77%
top-1 with its own recipe (RMSProp, AutoAugment, 350 epochs); this SGD recipe with 90
epochs will land lower. At 224 the resizer (0.99 GMACs) costs more than the network
(0.39 GMACs).
Cost (`python -m learned_resize.flops`, XLA cost analysis, batch 1, eval mode):
0.94 -> 3.07 GFLOPs per image (XLA; 2 x GMACs: 0.78 -> 2.74).
Time (baseline + learned): TPU v4-8 10-12 min + 7-9 min; 8x A100 4-5 min + 3-4 min:
a compute-bound lower bound at 40-50% MFU (method and caveats: `learned_resize/flops.py`).
Needs TFDS `imagenet2012` prepared under --config.data.data_dir (see README).
"""

from learned_resize import imagenet_recipe


def get_config():
    return imagenet_recipe.imagenet_config("efficientnet_b0")

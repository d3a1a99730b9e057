"""Default retargeting settings (`get_config`), one documented field each.

Tuned, where tuned at all, on scikit-image's photos only (the tuning set of
`photos.py`): the mask threshold against the subject boxes, the regulariser weights
earlier on the astronaut, the 'multi' operator's crop_fraction. Set a priori, not
tuned: reconstruction down to conv4_1 (the paper reconstructs from deep layers), rtol
1e-3 and the (40, 20) caps. The held-out photos never choose a default.

`validation.check_config` checks every field (choices, ranges, one iteration cap per
scale) before any weights load, so an absurd override is one error line, not a crash
later.
"""

import ml_collections

from learned_resize.retarget import mask as mask_lib
from learned_resize.retarget import seams

# Longer side of the working size (`c.work_side`); see bench/retarget.py for its speed.
WORK_SIDE = 256


def get_config() -> ml_collections.ConfigDict:
    """Default retargeting settings; every field is documented inline."""
    c = ml_collections.ConfigDict()
    # Feature-space operator: 'multi' (a crop keeping the most of the mask, then seams
    # for the rest of the reduction; `multi.py`), 'seam' (the paper's method: seams
    # only, with the mask protected; `--config.operator=seam`), 'uniform' or 'crop'.
    # The held-out comparison of all of them is in docs/retargeting.md.
    c.operator = "multi"
    # 'multi' only: share of each shrinking axis' reduction taken by the crop (0 = seams
    # only, 1 = crop only). 0.75 was chosen on scikit-image's tuning photos only:
    # `bench/retarget_crop_scan.py --plan_only` (mean subject NCC / artifact over the 4
    # photos, at 3/4 and 1/2 width) gave 98.9/12.1 and 85.5/15.7 at 0, 99.4/11.5 and
    # 88.7/15.3 at 0.25, 99.7/9.8 and 89.4/13.6 at 0.5, 99.9/8.4 and 89.8/11.3 at 0.75;
    # the full method (no --plan_only) 99.2/11.0 and 86.8/13.6, 99.5/8.7 and 89.5/12.5,
    # 99.7/9.2 and 90.0/12.1, 99.8/8.1 and 90.3/10.1: 0.75 is best on all four.
    c.crop_fraction = 0.75
    # Size buckets (`buckets.py`): the work is done on the photo with its sides rounded to
    # the nearest multiple of this many px (and the output likewise), and the result is
    # resized to the exact size at the end, so photos of nearby sizes reuse every compiled
    # program instead of compiling ~11 s of new ones (at 256 px). Sides already multiples
    # of it, and sides under 8 of it, are not resampled. 16 was set a priori (twice
    # conv4_1's stride; a side moves by at most 8 px: 3% at 256 px, 6% at 128), not
    # tuned; 0 or 1 works at the exact sizes.
    c.bucket = 16
    # Working size (`buckets.py`): mask, plan and reconstruction are computed on the photo
    # scaled so its longer side is at most this many px (0 = the photo's own size); the
    # plan is then applied to the full-resolution photo by copying pixels, and the
    # reconstruction's change, upsampled, is added where the plan does not copy.
    c.work_side = WORK_SIDE
    # The reconstruction is used within this many px (of the working size) of an output
    # pixel the plan does not copy, fading out over as many more; elsewhere the output is
    # the photo's own pixels.
    c.blend_margin = 8
    # How a reconstruction at the working size reaches the full-size output (`buckets.
    # carry_to_full`): 'change' adds its change to the full-size copy of the plan,
    # 'blend' blends in the reconstruction itself, upsampled, 'detail' takes the coarse
    # content from the reconstruction and the fine detail from the copy. 'change' was
    # set a priori; on the tuning photos at 512 px it ties 'detail' and beats 'blend'
    # (docs/retargeting.md, "How the reconstruction is carried up").
    c.carry = "change"
    # operator='auto' scores each candidate plan by subject_w x subject NCC (of the
    # mask's box) + completeness + coherence - artifact_w x artifact (`plans.score`):
    # (subject_w, artifact_w).
    c.auto_weights = (1.0, 1.0)
    # Seams are decided on the image scaled by 1/plan_stride (4 = the conv3 grid); a
    # coarse decision, spread smoothly over the finer layers, avoids pixel-seam jaggies.
    c.plan_stride = 4
    # Seam energy: 'gradient' (|d/dx| + |d/dy| of the luminance, Avidan & Shamir 2007) or
    # 'forward' (Rubinstein et al. 2008: the new neighbour differences a removal creates).
    # The held-out comparison is in docs/departures.md; not tuned.
    c.energy = "gradient"
    c.mask = ml_collections.ConfigDict()
    c.mask.layers = mask_lib.DEFAULT_LAYERS  # deepest VGG-19 layers whose energy marks objects
    c.mask.threshold = mask_lib.DEFAULT_THRESHOLD  # on the energy normalised by its maximum
    # The mask is computed on the image scaled to this longer side: deep VGG units
    # respond to objects at about ImageNet scale, and on a 512-px astronaut block 5
    # marked only parts (4% of the image) where at 256 px it marks face and suit (16%).
    c.mask.image_side = 256
    c.mask.open_size = 3  # morphological opening square (grid cells), 1 = off
    c.mask.close_size = 3  # morphological closing square, 1 = off
    c.mask.bonus = seams.MASK_BONUS  # seam energy added inside the mask
    # When some row has fewer unmasked columns than the reduction, carve seams up to the
    # mask and crop the rest around it (one printed line) instead of cutting the mask.
    c.mask.fallback = True
    # Reconstruction term: VGG-19 layers compared with their retargeted maps, weights.
    # Down to conv4_1 (stride 8), as the paper reconstructs from deep layers.
    c.rec_layers = ("conv1_1", "conv2_1", "conv3_1", "conv4_1")
    c.rec_weights = (0.5, 1.0, 1.0, 1.0)
    # Perceptual term: VGG-16 layers of the output compared with those of the input
    # warped by the same plan ('plan'), or of the linearly scaled input ('uniform', which
    # pulls towards the squeezed layout).
    c.perc_target = "plan"
    c.perc_layers = ("conv4_2",)
    c.perc_weights = (1.0,)
    c.perc_scale = 0.5  # VGG-16 sees the output at this scale (a quarter of the cost)
    c.alpha = 1.0  # reconstruction weight
    c.beta = 0.05  # perceptual weight (0 skips VGG-16 entirely)
    c.gamma = 1.0  # regulariser weight
    c.tv_weight = 10.0  # squared total variation (pixels in [0, 1])
    c.stats_weight = 1.0  # per-channel mean/std prior
    # Reference statistics for the prior: 'input' (the photo's own) or 'imagenet'.
    c.stats = "input"
    # Start of the first scale: 'plan' (the input warped by the plan: every pixel starts
    # where the plan puts it), 'uniform' (the linearly scaled input) or 'noise' (the
    # paper's other start: Gaussian noise with the photo's per-channel mean and std,
    # clipped to [0, 1]; `coarse_to_fine.initial_image`).
    c.init = "plan"
    c.noise_seed = 0  # init='noise' only
    # Coarse to fine: output scales and the most L-BFGS iterations spent at each; a
    # scale stops early once an iteration lowers the loss by less than rtol of it.
    c.scales = (0.5, 1.0)
    c.iterations = (40, 20)
    c.rtol = 1e-3
    # On CPU, VGG layers with >= 256 channels in and out run by Winograd's F(2x2, 3x3)
    # inside the loss (`winograd.py`) at scales whose output has at least this many
    # pixels (0 = every scale; a huge number = never). It runs faster and compiles
    # slower: `bench/retarget.py` with it at every scale against none, cold / warm s,
    # 256 px 23.2 / 8.2 vs 20.4 / 9.9, 512 px 45.5 / 37.5 vs 51.2 / 45.7. 2**17
    # (~362x362) sits between the two, set from those runs, not from quality data.
    c.winograd_min_pixels = 2**17
    c.chunk = 10  # iterations between progress lines
    c.memory_size = 10  # L-BFGS history
    c.max_linesearch_steps = 20
    c.tol = 0.0  # stop a scale early when the gradient norm falls below this
    return c

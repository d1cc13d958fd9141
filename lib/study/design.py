"""The study's design: the configurations, the claims that compare two of them and the controlled
experiments, and what is reported of each run.

A configuration is named by its `-S` settings on top of params.yaml (whose defaults are PiCIE's). Each
claim compares two configurations run with the same seeds on the same data: the effect is the paired
difference, better minus worse, seed by seed (lib/study/stats.py). A claim reproduces when its interval
excludes 0 in the paper's direction.
"""
DEFAULT = "defaults"  # params.yaml as it is
NOTRAIN, MDC, IIC = "method=notrain", "method=mdc", "method=iic"
SINGLE = "cluster.single=true"
NO_PHOTOMETRIC = "aug.photometric=false"
IMBALANCED = "data.imbalance=20"  # the embedded data with a long tail of classes (0.5-31 % of the pixels)
ZOOM = "aug.crop_measure=side"  # the authors' crops: 0.5-1 of the side, 0.25-1 of the area (ours: 0.5-1 of it)
ANY_HUE = "aug.hue=0.5"  # photometric jitter that spans the colour circle, as the embedded data's tints do
MDC_FITTED = f"{MDC} cluster.head_fit=3"  # Modified DeepCluster whose fresh heads are fitted before the backbone trains
STEGO = "method=stego"  # on the run's backbone (the study's: EfficientNet-Lite0, ImageNet weights), frozen
STEGO_RANDOM = f"{STEGO} stego.pairs=random"  # its neighbour pairs replaced by random crops
STEGO_UNCLAMPED = f"{STEGO} stego.stabilize=false"  # without the upper clamp at 0.8, as STEGO's configuration runs
# scored as papers since STEGO (lib/scoring.py): flip averaging, the dense CRF, both; on top of each
# method's own run (its label: the claim's name for it)
FLIP, CRF = "eval.flip=true", "eval.crf=true"
SCORED = (("flip averaging", FLIP), ("the dense CRF", CRF), ("flip averaging with the dense CRF", f"{FLIP} {CRF}"))
RESCORED = (("PiCIE", DEFAULT), ("IIC", IIC), ("STEGO", STEGO))


def _on(base, settings):
    return settings if base == DEFAULT else f"{base} {settings}"


CONFIGS = {name: [] if name == DEFAULT else name.split() for name in (
    DEFAULT, NOTRAIN, MDC, IIC, NO_PHOTOMETRIC, "aug.geometric=false", "model.classifier=linear",
    "cluster.k_over=32", SINGLE, "cluster.single=true loss.cross=false", "loss.balance=false",
    "loss.balance=proportional", "loss.balance=true", "loss.equivariance=mse", *(
        f"{IMBALANCED} {kv}".strip() for kv in ("", "loss.balance=false", "loss.balance=true", "cluster.k_over=32")),
    ZOOM, f"{ZOOM} {SINGLE}", ANY_HUE, MDC_FITTED, STEGO, STEGO_RANDOM, STEGO_UNCLAMPED,
    *(_on(base, settings) for _, base in RESCORED for _, settings in SCORED))}
SCORES = ("eval.acc", "eval.miou")
PROBE = ("probe.acc", "probe.miou")
# (paper table, claim, better config, worse config, metrics, the paper's (better, worse) (acc, mIoU))
CLAIMS = (
    ("1", "PiCIE beats no training", DEFAULT, NOTRAIN, SCORES, ((48.09, 13.84), (26.26, 8.41))),
    ("1", "PiCIE beats Modified DeepCluster", DEFAULT, MDC, SCORES, ((48.09, 13.84), (32.21, 9.79))),
    ("1", "PiCIE beats IIC", DEFAULT, IIC, SCORES, ((48.09, 13.84), (21.79, 6.71))),
    ("5", "photometric invariance helps", DEFAULT, NO_PHOTOMETRIC, SCORES,
     ((48.09, 13.84), (46.97, 12.04))),
    ("5", "geometric equivariance helps", DEFAULT, "aug.geometric=false", SCORES, ((48.09, 13.84), (42.55, 9.84))),
    ("5", "the non-parametric classifier beats a linear head", DEFAULT, "model.classifier=linear", SCORES, None),
    ("5", "overclustering (+H) helps", "cluster.k_over=32", DEFAULT, SCORES, ((49.99, 14.36), (48.09, 13.84))),
    # Table 6's "no inv." row is on top of "single" (single 44.31 / 11.71, single + no inv. 41.70 / 9.92)
    ("6", "the cross-view loss helps", SINGLE, "cluster.single=true loss.cross=false", SCORES,
     ((44.31, 11.71), (41.70, 9.92))),
    # the authors' runs, Table 6's among them, weighed clusters by their size (loss.balance: proportional);
    # the paper means rare clusters to weigh more (true: by 1 / size), which the paper has no number for
    ("6", "cluster balance helps (by cluster size: the authors' code)", "loss.balance=proportional",
     "loss.balance=false", SCORES, ((48.09, 13.84), (40.56, 11.46))),
    ("6", "cluster balance helps (by 1 / cluster size: the paper's intent)", "loss.balance=true",
     "loss.balance=false", SCORES, None),
    ("6", "the cross-view clustering loss beats MSE equivariance", DEFAULT, "loss.equivariance=mse", SCORES,
     ((48.09, 13.84), (44.15, 10.98))),
    ("6", "a clustering per view beats a single one", DEFAULT, SINGLE, SCORES, ((48.09, 13.84), (44.31, 11.71))),
    ("7", "PiCIE's features probe better than the untrained network's", DEFAULT, NOTRAIN, PROBE, None),
    ("7", "PiCIE's features probe better than Modified DeepCluster's", DEFAULT, MDC, PROBE,
     ((54.16, 13.89), (48.61, 13.30))),
    ("7", "PiCIE's features probe better than IIC's", DEFAULT, IIC, PROBE, ((54.16, 13.89), (44.50, 8.37))),
    # STEGO's (ICLR 2022) central claim, on the same frozen features `notrain` clusters (lib/methods/stego.py);
    # its paper's numbers are for DINO ViT-B/8 on COCO-Stuff-27, not this backbone: none is compared
    ("STEGO", "STEGO beats k-means on its own frozen backbone", STEGO, NOTRAIN, SCORES, None),
    ("STEGO", "STEGO's nearest-neighbour pairs beat random pairs", STEGO, STEGO_RANDOM, SCORES, None),
    ("STEGO", "STEGO beats PiCIE on the same backbone", STEGO, DEFAULT, SCORES + PROBE, None),
    # how papers since STEGO score (they report with and without): an experiment on these data, each method
    # against its own run scored as PiCIE's paper scores (the same trained network: only evaluate differs)
    *(("scoring", f"{how} helps {label}", _on(base, settings), base, SCORES, None)
      for label, base in RESCORED for how, settings in SCORED),
    # each step on top of the other: both runs of a pair score the one network the study trained for the
    # three rows above (a DVC run cache hit), where the base run may be another machine's training of it
    *(row for label, base in RESCORED for row in (
        ("scoring", f"the dense CRF helps {label} on top of flip averaging", _on(base, f"{FLIP} {CRF}"),
         _on(base, FLIP), SCORES, None),
        ("scoring", f"flip averaging helps {label} on top of the dense CRF", _on(base, f"{FLIP} {CRF}"),
         _on(base, CRF), SCORES, None))),
)
# Controlled experiments: where a claim does not reproduce here, what in this data decides it. The same
# shape as CLAIMS (better, worse, metrics), each with the claim it explains and what it tests.
EXPERIMENTS = (
    ("6", "balance by cluster size beats none when the classes are imbalanced", IMBALANCED,
     f"{IMBALANCED} loss.balance=false", SCORES,
     "the paper balances because COCO's clusters differ widely in size; the embedded classes cover 3.5-21 % of "
     "the pixels, `data.imbalance=20` 0.5-31 %"),
    ("6", "balance by 1 / cluster size beats none when the classes are imbalanced", f"{IMBALANCED} loss.balance=true",
     f"{IMBALANCED} loss.balance=false", SCORES, "as above, with the weighting the paper's text describes"),
    ("5", "overclustering (+H) helps when the classes are imbalanced", f"{IMBALANCED} cluster.k_over=32", IMBALANCED,
     SCORES, "with K clusters k-means splits frequent classes and merges rare ones; a second, finer clustering "
     "(the paper: it stabilises the clustering) may matter most with a long tail"),
    ("6", "a clustering per view beats a single one when the views differ more in scale", ZOOM, f"{ZOOM} {SINGLE}",
     SCORES, "the paper keeps two clusterings because the views hold different information (a zoomed-in and a "
     "full house); the authors' crops zoom in further than ours"),
    # without photometric views aug.hue is not read (lib/views.py): the pair differs in P alone, at hue 0.5
    ("5", "photometric invariance helps when its hue jitter spans the data's colours", ANY_HUE,
     NO_PHOTOMETRIC, SCORES, "the embedded data tint each region with any hue, so colour says nothing of "
     "the class; the authors' jitter turns hue by at most 0.1 of the circle, too little to make clusters "
     "colour-blind"),
    # not a claim of the paper's but one of its numbers: Table 1 has MDC well above no training, ours is not
    ("1", "Modified DeepCluster gains when its fresh heads predict the clusters before the backbone follows",
     MDC_FITTED, MDC, SCORES + PROBE, "its linear heads are re-initialised every epoch, so the backbone's first "
     "gradients of an epoch come from random heads; its probe falls below the untrained network's"),
    # STEGO's configuration turns its `stabalize` clamp off; every STEGO run of the study before had it on
    ("STEGO", "STEGO without its upper clamp (as its code runs) beats STEGO with it", STEGO_UNCLAMPED, STEGO,
     SCORES + PROBE, "with the clamp a pair whose codes are already alike (cosine above 0.8) gets no gradient; "
     "its claim over k-means on its frozen features does not reproduce on the embedded data with it"),
)
TARGETS = ("evaluate", "probe")  # the stages a study run reproduces (no re-training, no report)

REPORTING, TUNING = 0, 1  # data.seed of the variant the claims are reported on, and of the one defaults are tuned on
METHOD_ROWS = (DEFAULT, NOTRAIN, MDC, IIC, STEGO)  # the methods compared (outside.md's table too)
# methods.md; every other configuration is one of PiCIE's ablations
METHODS_TABLE = (*METHOD_ROWS, MDC_FITTED, STEGO_RANDOM, STEGO_UNCLAMPED)

# metrics file stem -> its headline keys, in table order: what a run's record keeps and the tables show
HEADLINE = {
    "eval": ("acc", "miou", "things_acc", "things_miou", "stuff_acc", "stuff_miou"),
    "probe": ("acc", "miou"),
    "retrain": ("acc", "miou", "c_acc", "c_miou"),
    "train": ("final_loss",),  # not its times: wall times belong to a bench on an idle machine, not here
}

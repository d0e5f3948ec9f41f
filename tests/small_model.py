"""Config overrides shared by the tests that train, evaluate or run a model end to end: a detector small enough
for a few CPU steps in seconds, on 96-pixel targets and 32-pixel queries."""

SMALL_MODEL = [
    "model.backbone.width=8",
    "model.hidden_dim=32",
    "model.num_heads=4",
    "model.num_layers=1",
    "model.ffn_dim=64",
    "model.num_queries=8",
    "model.bias_hidden_dim=16",
]
SMALL_DATA = [
    "data.target_sizes=[96]",
    "data.target_max_size=128",
    "data.test_size=96",
    "data.query_size=32",
    "data.min_query_size=8",
    "data.num_workers=0",
]
# eager: compiling costs seconds per run (tests/engine/test_compiling.py trains compiled)
SMALL = [*SMALL_MODEL, *SMALL_DATA, "train.compile=false"]
# a run of a few steps on it: batches of 2, no lr drop, every step logged, a 4-image evaluation
SHORT_RUN = [
    *SMALL,
    "train.batch_size=2",
    "train.warmup_steps=2",
    "train.lr_drop_at=1.0",
    "train.log_every=1",
    "eval.repeats=1",
    "eval.max_images=4",
    "eval.batch_size=4",
]

# every model option at the official IA-DETR code's value (docs/fidelity.md), for tests of the paper configs' model
# on the small scale above (the CPU-tiny recipe keeps the other value of each)
OFFICIAL_MODEL = [
    "model.proposals=multi_level",
    "model.query_pos=proposals",
    "model.content_from_target=false",
    "model.padding_features=backbone",
    "model.bias_inputs=linear",
    "model.look_forward_reach=previous",
    "model.one2many_selection=disjoint",
]

"""Facts of the DCASE 2019 Task 4 (DESED) task that every stage shares (SPEC section 3)."""

# DESED's classes, sorted: the vocabulary of DESED and of the built-in synthetic corpus, and the default where no
# study is at hand. A study's own classes are read from its data (harness.data.vocabulary); for DESED they are these.
CLASSES: tuple[str, ...] = (
    "Alarm_bell_ringing",
    "Blender",
    "Cat",
    "Dishes",
    "Dog",
    "Electric_shaver_toothbrush",
    "Frying",
    "Running_water",
    "Speech",
    "Vacuum_cleaner",
)
N_CLASSES = len(CLASSES)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

CLIP_SECONDS = 10.0
FRAME_HOP_SECONDS = 0.02  # 20 ms hop: frame i starts at i * 0.02 s
N_FRAMES = 500  # frames per 10 s clip

# Median / mean event duration (seconds) in DESED's strong synthetic set (SPEC section 3).
# The synthetic corpus draws its event lengths around the medians; the method itself always
# measures durations from the strong training set it is given, never from this table.
DESED_MEDIAN_SECONDS: dict[str, float] = {
    "Alarm_bell_ringing": 0.38,
    "Blender": 1.62,
    "Cat": 0.88,
    "Dishes": 0.37,
    "Dog": 0.48,
    "Electric_shaver_toothbrush": 4.07,
    "Frying": 5.13,
    "Running_water": 3.60,
    "Speech": 0.89,
    "Vacuum_cleaner": 5.30,
}
DESED_MEAN_SECONDS: dict[str, float] = {
    "Alarm_bell_ringing": 1.07,
    "Blender": 2.58,
    "Cat": 1.07,
    "Dishes": 0.58,
    "Dog": 0.98,
    "Electric_shaver_toothbrush": 4.52,
    "Frying": 5.17,
    "Running_water": 3.91,
    "Speech": 1.16,
    "Vacuum_cleaner": 5.29,
}

# Subset names used throughout; the DESED file layout of each is in harness.data.desed.
SUBSETS: tuple[str, ...] = ("synthetic", "weak", "unlabeled", "validation", "test")

"""FER-2013's facts, in one module that imports nothing: the label names and their order, the face
size, the splits, and the pixel normalisation every model input goes through.

  EMOTIONS      the 7 label names, in FER-2013 label order (0..6)
  NUM_CLASSES   7
  IMAGE_SIZE    48: faces are IMAGE_SIZE x IMAGE_SIZE grayscale; NUM_PIXELS = 48 * 48
  SPLITS        Training, PublicTest, PrivateTest (FER-2013's Usage column)
  CACHE         data/fer2013.npz: where preprocess writes the cache and every mode reads it by default
  normalise     pixel values 0..255 (numpy array or TensorFlow tensor, float) -> model input scale
"""

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
IMAGE_SIZE = 48
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
SPLITS = ("Training", "PublicTest", "PrivateTest")
CACHE = "data/fer2013.npz"  # relative to the current folder, as every output default is

# FER-2013's pixel mean and standard deviation are close to these round
# numbers (0.508 and 0.255 of full scale over Training); fixed constants keep
# the transform independent of whichever data set a checkpoint was trained on.
# Exported graphs take the uint8 faces and apply the same normalise inside.
INPUT_MEAN = 0.5 * 255.0
INPUT_STD = 0.25 * 255.0


def normalise(pixels):
    """Float pixel values 0..255 -> about zero-mean, unit-variance; numpy arrays and TensorFlow
    tensors alike (checkpoints.build applies it in exported graphs)."""
    return (pixels - INPUT_MEAN) / INPUT_STD

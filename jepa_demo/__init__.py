"""JEPA Lens: train, load and inspect small video Joint-Embedding Predictive Architectures.

    import jepa_demo
    video = jepa_demo.read_video("clip.mp4")          # uint8 (T, H, W, 3)
    model = jepa_demo.load_model("checkpoints/default")
    model.embed(video); model.predict_masked(video, mask="future"); model.surprise(video)
"""

from .checkpoint import CheckpointError
from .inference import JEPAModel, MaskedPrediction, Surprise, load_model
from .video import VideoError, read_video, video_info, write_video

__all__ = ["CheckpointError", "JEPAModel", "MaskedPrediction", "Surprise", "VideoError", "load_model",
           "read_video", "video_info", "write_video"]

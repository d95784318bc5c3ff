from repro.models.lm import LM, LMOutput, ModelConfig

__all__ = ["LM", "LMOutput", "ModelConfig"]

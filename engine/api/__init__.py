"""The Python API: Workspace → Dataset / Model → ModelRun (names follow the Nucleus client)."""
from .dataset import Dataset
from .model import Model, ModelRun
from .workspace import Workspace, connect

__all__ = ["Workspace", "Dataset", "Model", "ModelRun", "connect"]

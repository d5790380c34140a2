"""The Python API: Workspace → Dataset / Model → ModelRun (names follow the Nucleus client)."""
from .dataset import Dataset
from .model import Model, ModelRun
from .workspace import Workspace, connect
from ..store.sharing import hold_methods

hold_methods(Workspace, lambda ws: ws.store)  # each public call is one operation on a shared store
for _cls in (Dataset, Model, ModelRun):
    hold_methods(_cls)
# Slice (engine.curation.slices) holds its methods itself when first imported: importing it here would
# load the DSL compiler (sqlglot's DuckDB dialect, lark) in every process, `loupe eval` included.

__all__ = ["Workspace", "Dataset", "Model", "ModelRun", "connect"]

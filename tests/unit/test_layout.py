"""The tree shows the layers: engine/'s root holds only the package entry points and the shared errors,
and the store imports nothing from query execution (caches check the store's generation instead)."""
import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def test_engine_root_holds_no_layer_modules():
    loose = sorted(p.name for p in ENGINE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "errors.py"]


def test_store_imports_no_query_execution():
    for path in (ENGINE / "store").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                assert "execution" not in module and "cache" not in module, (path.name, module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert "engine.execution" not in alias.name, (path.name, alias.name)


def test_closing_a_store_frees_its_copies():
    import engine
    from engine.execution import item_cache

    ws = engine.connect()
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem(image_location=f"{i}.png", reference_id=str(i), width=10, height=10)
               for i in range(3)], check_images=False)
    for _ in range(3):
        ds.query("")
    store = ws.store
    assert item_cache.COPIES.entries.get(store)
    ws.close()
    assert not item_cache.COPIES.entries.get(store)

from __future__ import annotations

import pickle
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest

from tests.unit.contract.conftest import MakeTruss
from trestle.contract import evict_model_modules, import_model_class, reload_model_class
from trestle.errors import ModelLoadError

SIMPLE = """
class Model:
    def predict(self, inputs):
        return {"version": 1}
"""


def test_imports_default_layout(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/model.py": SIMPLE})
    cls = import_model_class(truss)
    assert cls.__name__ == "Model"
    assert cls().predict({}) == {"version": 1}


def test_module_is_registered_as_package_module(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/model.py": SIMPLE})
    cls = import_model_class(truss)
    assert cls.__module__ == "model.model"
    assert sys.modules["model.model"].Model is cls
    assert sys.modules["model"].model is sys.modules["model.model"]
    assert Path(sys.modules["model.model"].__file__ or "") == (truss / "model" / "model.py").resolve()


def test_absolute_import_of_sibling_module(make_truss: MakeTruss) -> None:
    truss = make_truss(
        {
            "model/model.py": """
                from model.helpers import greet

                class Model:
                    def predict(self, inputs):
                        return greet(inputs)
            """,
            "model/helpers.py": "def greet(name):\n    return f'hello {name}'\n",
        }
    )
    assert import_model_class(truss)().predict("a") == "hello a"


def test_relative_import_of_sibling_module(make_truss: MakeTruss) -> None:
    truss = make_truss(
        {
            "model/model.py": """
                from .helpers import greet
                from .sub.deep import VALUE

                class Model:
                    def predict(self, inputs):
                        return greet(inputs) + VALUE
            """,
            "model/helpers.py": "def greet(name):\n    return f'hello {name}'\n",
            "model/sub/deep.py": "VALUE = '!'\n",
        }
    )
    assert import_model_class(truss)().predict("b") == "hello b!"


def test_regular_package_with_init(make_truss: MakeTruss) -> None:
    truss = make_truss(
        {
            "model/__init__.py": "INIT_RAN = True\n",
            "model/model.py": "from . import INIT_RAN\n" + SIMPLE,
        }
    )
    import_model_class(truss)
    assert sys.modules["model"].INIT_RAN is True


def test_bundled_packages_dir(make_truss: MakeTruss) -> None:
    truss = make_truss(
        {
            "model/model.py": """
                from shared_lib.tools import double

                class Model:
                    def predict(self, inputs):
                        return double(inputs)
            """,
            "packages/shared_lib/__init__.py": "",
            "packages/shared_lib/tools.py": "def double(x):\n    return 2 * x\n",
        }
    )
    assert import_model_class(truss)().predict(4) == 8
    assert str((truss / "packages").resolve()) in sys.path


def test_custom_bundled_packages_dir_name(make_truss: MakeTruss) -> None:
    truss = make_truss(
        {
            "model/model.py": "import vendored_mod\n" + SIMPLE,
            "libs/vendored_mod.py": "X = 1\n",
        }
    )
    import_model_class(truss, bundled_packages_dir="libs")
    assert sys.modules["vendored_mod"].X == 1


def test_sys_path_has_no_duplicates(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/model.py": SIMPLE, "packages/.keep": ""})
    import_model_class(truss)
    import_model_class(truss)
    reload_model_class(truss)
    root, packages = str(truss.resolve()), str((truss / "packages").resolve())
    assert sys.path.count(root) == 1
    assert sys.path.count(packages) == 1
    assert sys.path[0] == root


def test_non_default_module_dir_filename_and_class(make_truss: MakeTruss) -> None:
    truss = make_truss(
        {
            "src/my_model.py": """
                from .util import NAME
                from src.util import NAME as SAME

                class Custom:
                    def predict(self, inputs):
                        return NAME + SAME
            """,
            "src/util.py": "NAME = 'x'\n",
        }
    )
    cls = import_model_class(
        truss, model_module_dir="src", model_class_filename="my_model.py", model_class_name="Custom"
    )
    assert cls.__module__ == "src.my_model"
    assert cls().predict(None) == "xx"


def test_module_dir_that_is_not_an_identifier(make_truss: MakeTruss) -> None:
    truss = make_truss(
        {
            "my-model/model.py": "from .helpers import VALUE\n" + SIMPLE.replace("1}", "VALUE}"),
            "my-model/helpers.py": "VALUE = 7\n",
        }
    )
    cls = import_model_class(truss, model_module_dir="my-model")
    assert cls().predict(None) == {"version": 7}
    assert sys.modules[cls.__module__].Model is cls


def test_cached_import_returns_same_class(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/model.py": SIMPLE})
    assert import_model_class(truss) is import_model_class(truss)


def test_second_truss_replaces_first(make_truss: MakeTruss) -> None:
    first = make_truss({"model/model.py": SIMPLE}, name="first")
    second = make_truss({"model/model.py": SIMPLE.replace("1}", "2}")}, name="second")
    assert import_model_class(first)().predict(None) == {"version": 1}
    assert import_model_class(second)().predict(None) == {"version": 2}


def test_missing_file(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/other.py": SIMPLE})
    with pytest.raises(ModelLoadError) as info:
        import_model_class(truss)
    message = str(info.value)
    assert str((truss / "model" / "model.py").resolve()) in message
    assert "is not a file" in message


def test_missing_module_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is not a file"):
        import_model_class(tmp_path)


def test_missing_class(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/model.py": SIMPLE})
    with pytest.raises(ModelLoadError) as info:
        import_model_class(truss, model_class_name="Missing")
    message = str(info.value)
    assert "`Missing`" in message
    assert str((truss / "model" / "model.py").resolve()) in message


def test_name_that_is_not_a_class(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/model.py": "Model = 3\n"})
    with pytest.raises(ModelLoadError, match="is not a class"):
        import_model_class(truss)


def test_exception_during_import_is_wrapped(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/model.py": "raise RuntimeError('boom at import')\n"})
    with pytest.raises(ModelLoadError) as info:
        import_model_class(truss)
    assert str((truss / "model" / "model.py").resolve()) in str(info.value)
    assert "RuntimeError: boom at import" in str(info.value)
    assert isinstance(info.value.__context__, RuntimeError)
    assert "model.model" not in sys.modules


def test_missing_dependency_is_wrapped(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/model.py": "import trestle_no_such_module_xyz\n"})
    with pytest.raises(ModelLoadError) as info:
        import_model_class(truss)
    assert isinstance(info.value.__context__, ModuleNotFoundError)


def test_pickling_instances_of_model_module_classes(make_truss: MakeTruss) -> None:
    truss = make_truss(
        {
            "model/model.py": """
                from .helpers import Point

                class Model:
                    def __init__(self):
                        self.point = Point(1, 2)
            """,
            "model/helpers.py": """
                class Point:
                    def __init__(self, x, y):
                        self.x, self.y = x, y
            """,
        }
    )
    cls = import_model_class(truss)
    restored: Any = pickle.loads(pickle.dumps(cls()))
    assert (restored.point.x, restored.point.y) == (1, 2)
    assert type(restored) is cls


def test_reload_picks_up_edited_code(make_truss: MakeTruss) -> None:
    truss = make_truss(
        {
            "model/model.py": """
                from .helpers import VALUE

                class Model:
                    def predict(self, inputs):
                        return VALUE
            """,
            "model/helpers.py": "VALUE = 'old'\n",
        }
    )
    old = import_model_class(truss)
    assert old().predict(None) == "old"
    (truss / "model" / "helpers.py").write_text("VALUE = 'new'\n")  # same size as before
    new = reload_model_class(truss)
    assert new is not old
    assert new().predict(None) == "new"
    assert sys.modules["model.model"].Model is new
    assert old().predict(None) == "old"  # the caller's old class keeps working


def test_reload_picks_up_new_modules(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/model.py": SIMPLE})
    import_model_class(truss)
    (truss / "model" / "extra.py").write_text("EXTRA = 5\n")
    (truss / "model" / "model.py").write_text("from .extra import EXTRA\n\nclass Model:\n    value = EXTRA\n")
    assert reload_model_class(truss).value == 5  # type: ignore[attr-defined]


def test_failed_reload_keeps_old_modules(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/model.py": SIMPLE, "model/helpers.py": "X = 1\n"})
    old = import_model_class(truss)
    old_module = sys.modules["model.model"]
    (truss / "model" / "model.py").write_text("def broken(:\n")
    with pytest.raises(ModelLoadError) as info:
        reload_model_class(truss)
    assert isinstance(info.value.__context__, SyntaxError)
    assert sys.modules["model.model"] is old_module
    assert type(pickle.loads(pickle.dumps(old()))) is old


def test_reload_of_non_identifier_module_dir(make_truss: MakeTruss) -> None:
    truss = make_truss({"my-model/model.py": SIMPLE})
    import_model_class(truss, model_module_dir="my-model")
    (truss / "my-model" / "model.py").write_text(SIMPLE.replace("1}", "3}"))
    assert reload_model_class(truss, model_module_dir="my-model")().predict(None) == {"version": 3}


def test_evict_model_modules(make_truss: MakeTruss) -> None:
    truss = make_truss(
        {
            "model/model.py": "from . import helpers\nfrom .sub import deep\n" + SIMPLE,
            "model/helpers.py": "",
            "model/sub/deep.py": "",
            "packages/keep_me.py": "",
        }
    )
    import_model_class(truss)
    import keep_me  # type: ignore[import-not-found]  # noqa: F401

    evicted = evict_model_modules(truss)
    assert set(evicted) == {"model", "model.model", "model.helpers", "model.sub", "model.sub.deep"}
    assert not any(name == "model" or name.startswith("model.") for name in sys.modules)
    assert "keep_me" in sys.modules


def test_reload_of_a_truss_never_imported_replaces_another(make_truss: MakeTruss) -> None:
    first = make_truss({"model/model.py": SIMPLE}, name="first")
    second = make_truss({"model/model.py": SIMPLE.replace("1}", "2}")}, name="second")
    import_model_class(first)
    assert reload_model_class(second)().predict(None) == {"version": 2}
    assert Path(sys.modules["model"].__path__[0]).resolve() == (second / "model").resolve()


def test_import_error_traceback_is_the_users(make_truss: MakeTruss) -> None:
    """The logged traceback starts and ends in the user's file: no Trestle or importlib frames, no chain."""
    code = "import os\n\nVALUE = undefined_name + 1\n\nclass Model:\n    pass\n"
    truss = make_truss({"model/model.py": code})
    with pytest.raises(ModelLoadError) as info:
        import_model_class(truss)
    frames = traceback.extract_tb(info.value.__traceback__)
    model_file = str((truss / "model" / "model.py").resolve())
    user = [f for f in frames if f.filename == model_file]
    assert user and (user[-1].lineno, user[-1].line) == (3, "VALUE = undefined_name + 1")
    assert frames[-1] == user[-1]
    assert not any("importlib" in f.filename for f in frames)
    text = "".join(traceback.format_exception(type(info.value), info.value, info.value.__traceback__))
    assert "direct cause" not in text and "During handling" not in text
    assert text.rstrip().endswith("NameError: name 'undefined_name' is not defined")

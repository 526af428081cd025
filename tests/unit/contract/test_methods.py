from __future__ import annotations

import inspect
import traceback
from collections.abc import AsyncGenerator, Generator
from typing import Any

import fastapi
import pytest
import starlette.requests
from pydantic import BaseModel

from tests.unit.contract._support import build_instance
from tests.unit.contract.conftest import MakeTruss
from trestle.contract import (
    GENERATOR_WITH_POSTPROCESS,
    RESPONSE_WITH_POSTPROCESS,
    ROUTE_METHODS,
    ArgForm,
    CallKind,
    describe_method,
    describe_model,
    import_model_class,
    is_request_type,
)
from trestle.errors import ModelDefinitionError, ModelLoadError


class Payload(BaseModel):
    prompt: str


class MyRequest(starlette.requests.Request):
    pass


# ---------------------------------------------------------------------------------------------
# ArgForm detection (this module uses `from __future__ import annotations`: all annotations are strings)


class _Forms:
    def none(self) -> None: ...

    def inputs_untyped(self, inputs): ...  # type: ignore[no-untyped-def]

    def inputs_typed(self, inputs: Payload) -> Payload:
        return inputs

    def request_starlette(self, request: starlette.requests.Request) -> None: ...

    def request_fastapi(self, request: fastapi.Request) -> None: ...

    def request_subclass(self, request: MyRequest) -> None: ...

    def both(self, inputs: dict[str, Any], request: fastapi.Request) -> None: ...

    def websocket_arg(self, ws: fastapi.WebSocket) -> None: ...


@pytest.mark.parametrize(
    ("method", "form"),
    [
        ("none", ArgForm.NONE),
        ("inputs_untyped", ArgForm.INPUTS_ONLY),
        ("inputs_typed", ArgForm.INPUTS_ONLY),
        ("request_starlette", ArgForm.REQUEST_ONLY),
        ("request_fastapi", ArgForm.REQUEST_ONLY),
        ("request_subclass", ArgForm.REQUEST_ONLY),
        ("both", ArgForm.INPUTS_AND_REQUEST),
        ("websocket_arg", ArgForm.INPUTS_ONLY),
    ],
)
def test_arg_form_with_string_annotations(method: str, form: ArgForm) -> None:
    assert describe_method(method, getattr(_Forms(), method)).form is form


def test_arg_form_with_runtime_annotations() -> None:
    model = build_instance(
        """
        import fastapi
        import starlette.requests

        class Model:
            def predict(self, inputs: dict, request: fastapi.Request): ...
            def preprocess(self, request: starlette.requests.Request): ...
            def postprocess(self, outputs: list): ...
        """
    )
    assert describe_method("predict", model.predict).form is ArgForm.INPUTS_AND_REQUEST
    assert describe_method("preprocess", model.preprocess).form is ArgForm.REQUEST_ONLY
    assert describe_method("postprocess", model.postprocess).form is ArgForm.INPUTS_ONLY


def test_request_type_detection() -> None:
    assert is_request_type(starlette.requests.Request)
    assert is_request_type(fastapi.Request)
    assert is_request_type(MyRequest)
    assert not is_request_type("Request")
    assert not is_request_type(fastapi.WebSocket)
    assert not is_request_type(dict[str, Any])
    assert not is_request_type(None)


def test_annotations_are_resolved() -> None:
    desc = describe_method("inputs_typed", _Forms().inputs_typed)
    assert desc.parameter_annotation is Payload
    assert desc.return_annotation is Payload
    both = describe_method("both", _Forms().both)
    assert both.parameter_annotation == dict[str, Any]
    assert both.return_annotation is type(None)  # `-> None`
    assert describe_method("inputs_untyped", _Forms().inputs_untyped).return_annotation is None  # unannotated
    assert describe_method("none", _Forms().none).parameter_annotation is None
    assert describe_method("request_fastapi", _Forms().request_fastapi).parameter_annotation is None


def test_unresolvable_annotation_falls_back_per_name() -> None:
    # One name that cannot be resolved must not hide that the second parameter is the request.
    model = build_instance(
        """
        import fastapi

        class Model:
            def predict(self, inputs: "NotDefinedAnywhere", request: "fastapi.Request") -> "AlsoMissing": ...
        """
    )
    desc = describe_method("predict", model.predict)
    assert desc.form is ArgForm.INPUTS_AND_REQUEST
    assert desc.parameter_annotation == "NotDefinedAnywhere"
    assert desc.return_annotation == "AlsoMissing"


def test_descriptor_keeps_bound_method() -> None:
    forms = _Forms()
    desc = describe_method("none", forms.none)
    assert desc.name == "none"
    assert desc.fn == forms.none


# ---------------------------------------------------------------------------------------------
# CallKind detection


class _Kinds:
    def sync(self) -> int:
        return 1

    async def coroutine(self) -> int:
        return 1

    def sync_gen(self) -> Generator[str, None, None]:
        yield "x"

    async def async_gen(self) -> AsyncGenerator[str, None]:
        yield "x"


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("sync", CallKind.SYNC),
        ("coroutine", CallKind.ASYNC),
        ("sync_gen", CallKind.SYNC_GEN),
        ("async_gen", CallKind.ASYNC_GEN),
    ],
)
def test_call_kind(method: str, kind: CallKind) -> None:
    assert describe_method(method, getattr(_Kinds(), method)).kind is kind


def test_callable_object_is_inspected_through_call() -> None:
    class Handler:
        async def __call__(self, inputs: dict[str, Any], request: fastapi.Request) -> None: ...

    class Model:
        def __init__(self) -> None:
            self.predict = Handler()

    desc = describe_model(Model()).predict
    assert desc is not None
    assert desc.kind is CallKind.ASYNC
    assert desc.form is ArgForm.INPUTS_AND_REQUEST


# ---------------------------------------------------------------------------------------------
# Section 1.3: argument rules and their exact messages


def test_more_than_two_arguments() -> None:
    class Model:
        def predict(self, a: Any, b: Any, c: Any) -> None: ...

    model = Model()
    with pytest.raises(ModelDefinitionError) as info:
        describe_model(model)
    assert (
        str(info.value)
        == f"`predict` method cannot have more than two arguments. Got: {inspect.signature(model.predict)}"
    )
    assert (
        str(info.value)
        == "`predict` method cannot have more than two arguments. Got: (a: 'Any', b: 'Any', c: 'Any') -> 'None'"
    )


def test_request_as_first_of_two_arguments() -> None:
    class Model:
        def predict(self, request: fastapi.Request, inputs: Any) -> None: ...

    model = Model()
    with pytest.raises(ModelDefinitionError) as info:
        describe_model(model)
    assert str(info.value) == (
        "`predict` method with two arguments is not allowed to have request as first argument, "
        f"request must be second. Got: {inspect.signature(model.predict)}"
    )


def test_second_of_two_arguments_must_be_request() -> None:
    class Model:
        def predict(self, inputs: Any, other: Any) -> None: ...

    model = Model()
    with pytest.raises(ModelDefinitionError) as info:
        describe_model(model)
    # Truss's message ends with a space after the signature.
    assert str(info.value) == (
        "`predict` method with two arguments must have request as second argument (type annotated). "
        f"Got: {inspect.signature(model.predict)} "
    )


def test_unannotated_second_argument_is_not_a_request() -> None:
    # Detection uses the annotation only; the parameter name does not count.
    model = build_instance(
        """
        class Model:
            def predict(self, inputs, request): ...
        """
    )
    with pytest.raises(ModelDefinitionError, match="must have request as second argument"):
        describe_model(model)


@pytest.mark.parametrize("name", [*ROUTE_METHODS, "preprocess", "postprocess", "setup_environment"])
def test_argument_rules_apply_to_every_method(name: str) -> None:
    model = build_instance(
        f"""
        class Model:
            def predict(self, inputs): ...
            def {name}(self, a, b, c): ...
        """
    )
    with pytest.raises(ModelDefinitionError, match=f"^`{name}` method cannot have more than two arguments"):
        describe_model(model)


def test_definition_error_is_a_type_error_and_a_load_error() -> None:
    class Model:
        pass

    with pytest.raises(ModelDefinitionError) as info:
        describe_model(Model())
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, ModelLoadError)


# ---------------------------------------------------------------------------------------------
# Section 1.4: combination rules 1-7 and their exact messages


def test_rule1_is_healthy_takes_only_self() -> None:
    class Model:
        def predict(self) -> None: ...

        def is_healthy(self, x: Any) -> bool:
            return True

    with pytest.raises(ModelDefinitionError) as info:
        describe_model(Model())
    assert str(info.value) == "`is_healthy` must have only one argument: `self`."


def test_rule1_is_checked_before_predict() -> None:
    class Model:
        def predict(self, a: Any, b: Any, c: Any) -> None: ...

        def is_healthy(self, x: Any) -> bool:
            return True

    with pytest.raises(ModelDefinitionError, match="^`is_healthy` must have only one argument"):
        describe_model(Model())


@pytest.mark.parametrize("other", ["predict", "preprocess", "postprocess"])
def test_rule2_websocket_with_pipeline_methods(other: str) -> None:
    model = build_instance(
        f"""
        class Model:
            async def websocket(self, websocket): ...
            def {other}(self, inputs): ...
        """
    )
    with pytest.raises(ModelDefinitionError) as info:
        describe_model(model)
    # Verbatim from Truss, including its missing closing backtick.
    assert str(info.value) == (
        "Truss model cannot have both `websocket` and any of `predict`, `preprocess`, or `postprocess methods."
    )


def test_rule3_needs_predict_or_websocket() -> None:
    class Model:
        def preprocess(self, inputs: Any) -> Any:
            return inputs

    with pytest.raises(ModelDefinitionError) as info:
        describe_model(Model())
    assert str(info.value) == "Truss model must have a `predict` or `websocket` method."


@pytest.mark.parametrize(
    "signature", ["async def websocket(self): ...", "async def websocket(self, ws: fastapi.Request): ..."]
)
def test_rule4_websocket_takes_one_argument(signature: str) -> None:
    model = build_instance(
        f"""
        import fastapi

        class Model:
            {signature}
        """
    )
    with pytest.raises(ModelDefinitionError) as info:
        describe_model(model)
    assert str(info.value) == "`websocket` must have only one argument: `websocket`."


@pytest.mark.parametrize(
    "definition", ["def websocket(self, ws): ...", "async def websocket(self, ws):\n                yield 1"]
)
def test_rule5_websocket_must_be_async(definition: str) -> None:
    model = build_instance(
        f"""
        class Model:
            {definition}
        """
    )
    with pytest.raises(ModelDefinitionError) as info:
        describe_model(model)
    assert str(info.value) == "`websocket` endpoints must be async function definitions."


def test_rule6_preprocess_with_request_only_predict() -> None:
    class Model:
        def preprocess(self, inputs: Any) -> Any:
            return inputs

        def predict(self, request: fastapi.Request) -> None: ...

    with pytest.raises(ModelDefinitionError) as info:
        describe_model(Model())
    # Verbatim from Truss, including its double space before "discarded".
    assert str(info.value) == (
        "When using `preprocess`, the predict method cannot only have the request argument "
        "(because the result of `preprocess` would be  discarded)."
    )


def test_rule7_postprocess_request_only() -> None:
    class Model:
        def predict(self, inputs: Any) -> Any:
            return inputs

        def postprocess(self, request: fastapi.Request) -> None: ...

    with pytest.raises(ModelDefinitionError) as info:
        describe_model(Model())
    assert str(info.value) == (
        "The `postprocess` method cannot only have the request argument "
        "(because the result of `predict` would be discarded)."
    )


def test_per_request_rule_messages() -> None:
    assert GENERATOR_WITH_POSTPROCESS == (
        "If the predict function returns a generator (streaming), you cannot use postprocessing. "
        "Include all processing in the predict method."
    )
    assert (
        RESPONSE_WITH_POSTPROCESS == "If the predict function returns a response object, you cannot use postprocessing."
    )


# ---------------------------------------------------------------------------------------------
# Valid models


def test_full_model_descriptor() -> None:
    class Model:
        def load(self) -> None: ...

        async def is_healthy(self) -> bool:
            return True

        def setup_environment(self, environment: dict[str, Any]) -> None: ...

        async def preprocess(self, inputs: Payload, request: fastapi.Request) -> Payload:
            return inputs

        def predict(self, inputs: Payload) -> Generator[str, None, None]:
            yield inputs.prompt

        async def chat_completions(self, inputs: dict[str, Any], request: fastapi.Request) -> AsyncGenerator[str, None]:
            yield "x"

        def embeddings(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return inputs

    desc = describe_model(Model())
    assert desc.predict is not None
    assert desc.predict.kind is CallKind.SYNC_GEN
    assert desc.preprocess is not None
    assert desc.preprocess.form is ArgForm.INPUTS_AND_REQUEST
    assert desc.preprocess.kind is CallKind.ASYNC
    assert desc.postprocess is None
    assert desc.is_healthy is not None
    assert desc.is_healthy.form is ArgForm.NONE
    assert desc.setup_environment is not None
    assert desc.websocket is None
    assert desc.load is not None
    assert desc.load_is_async is False
    chat = desc.route("chat_completions")
    assert chat is not None
    assert chat.kind is CallKind.ASYNC_GEN
    assert desc.route("embeddings") is desc.embeddings
    assert desc.route("completions") is None
    assert desc.route("messages") is None
    assert desc.route("responses") is None
    assert desc.skip_input_parsing is False


def test_route_rejects_unknown_names() -> None:
    class Model:
        def predict(self) -> None: ...

    with pytest.raises(ValueError, match="not a route method"):
        describe_model(Model()).route("predict")


def test_websocket_only_model() -> None:
    class Model:
        async def websocket(self, websocket: fastapi.WebSocket) -> None: ...

    desc = describe_model(Model())
    assert desc.websocket is not None
    assert desc.websocket.form is ArgForm.INPUTS_ONLY
    assert desc.websocket.kind is CallKind.ASYNC
    assert desc.predict is None


def test_async_load_is_detected() -> None:
    class Model:
        async def load(self) -> None: ...

        def predict(self) -> None: ...

    desc = describe_model(Model())
    assert desc.load_is_async is True


def test_model_without_load() -> None:
    class Model:
        def predict(self) -> None: ...

    desc = describe_model(Model())
    assert desc.load is None
    assert desc.load_is_async is False


def test_non_callable_attributes_are_not_methods() -> None:
    class Model:
        def __init__(self) -> None:
            self.messages: list[str] = []
            self.load = "not a method"

        def predict(self) -> None: ...

    desc = describe_model(Model())
    assert desc.messages is None
    assert desc.load is None


@pytest.mark.parametrize(
    ("source", "skip"),
    [
        ("def predict(self, request: fastapi.Request): ...", True),
        ("def predict(self, inputs): ...", False),
        ("def predict(self): ...", False),
        ("def predict(self, inputs, request: fastapi.Request): ...", False),
        (
            "def predict(self, request: fastapi.Request): ...\n            def postprocess(self, outputs): ...",
            True,
        ),
    ],
)
def test_skip_input_parsing(source: str, skip: bool) -> None:
    model = build_instance(
        f"""
        import fastapi

        class Model:
            {source}
        """
    )
    assert describe_model(model).skip_input_parsing is skip


def test_request_with_none_default_is_still_a_request() -> None:
    # Python 3.10's get_type_hints would report Optional[Request] here; Truss sees the plain annotation.
    class Model:
        def predict(self, inputs: Any, request: fastapi.Request = None) -> None:  # type: ignore[assignment]
            ...

    desc = describe_model(Model()).predict
    assert desc is not None
    assert desc.form is ArgForm.INPUTS_AND_REQUEST


def test_explicit_optional_request_is_not_a_request() -> None:
    class Model:
        def predict(self, request: fastapi.Request | None = None) -> None: ...

    desc = describe_model(Model()).predict
    assert desc is not None
    assert desc.form is ArgForm.INPUTS_ONLY


# ---------------------------------------------------------------------------------------------
# Every annotation form loads on every Python (3.10: `dict[str, Any]` is an instance of `type`)

ANNOTATION_SOURCES = [
    "dict[str, Any]",
    "list[int]",
    "list[Payload]",
    "tuple[int, ...]",
    "int | None",
    "Payload | None",
    "Optional[Payload]",
    "Union[Payload, dict]",
    "List[int]",
    "Dict[str, Any]",
    "Annotated[Payload, 'meta']",
    "Annotated[dict[str, Any], 'meta']",
    "Literal['a', 'b']",
    "Any",
]


@pytest.mark.parametrize("future", [False, True], ids=["runtime", "future-annotations"])
@pytest.mark.parametrize("annotation", ANNOTATION_SOURCES)
def test_any_annotation_form_loads(annotation: str, future: bool) -> None:
    header = "from __future__ import annotations\n" if future else ""
    model = build_instance(
        header
        + f"""
from typing import Annotated, Any, Dict, List, Literal, Optional, Union
import fastapi
from pydantic import BaseModel

class Payload(BaseModel):
    text: str

class Model:
    def preprocess(self, model_input: {annotation}) -> {annotation}:
        return model_input

    def predict(self, model_input: {annotation}, request: fastapi.Request) -> {annotation}:
        return model_input

    def postprocess(self, model_output: {annotation}) -> {annotation}:
        return model_output
"""
    )
    desc = describe_model(model)
    assert desc.predict is not None and desc.predict.form is ArgForm.INPUTS_AND_REQUEST
    assert desc.preprocess is not None and desc.preprocess.form is ArgForm.INPUTS_ONLY
    assert desc.postprocess is not None and desc.postprocess.form is ArgForm.INPUTS_ONLY


# ---------------------------------------------------------------------------------------------
# Rule errors point at the user's definition


def test_rule_error_traceback_ends_in_the_users_def_line(make_truss: MakeTruss) -> None:
    code = """
        class Model:
            def is_healthy(self, x):
                return True

            def predict(self, x):
                return x
        """
    truss = make_truss({"model/model.py": code})
    with pytest.raises(ModelDefinitionError) as info:
        describe_model(import_model_class(truss)())
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert (last.filename, last.lineno, last.name) == (str(truss / "model" / "model.py"), 2, "is_healthy")
    assert last.line == "def is_healthy(self, x):"
    shown = "".join(traceback.format_exception_only(type(info.value), info.value))
    assert "ModelDefinitionError: `is_healthy` must have only one argument" in shown


def test_class_level_rule_error_points_at_the_class(make_truss: MakeTruss) -> None:
    truss = make_truss({"model/model.py": "import os\n\n\nclass Model:\n    def load(self):\n        pass\n"})
    with pytest.raises(ModelDefinitionError, match="must have a `predict` or `websocket` method") as info:
        describe_model(import_model_class(truss)())
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert (last.filename, last.lineno) == (str(truss / "model" / "model.py"), 4)

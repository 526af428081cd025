"""The Truss model contract: find and import the class, describe its methods, derive its schema, build it.

discovery   import_model_class / reload_model_class: the model file as a real package module
methods     describe_model: ArgForm and CallKind per method, Truss's rules and messages
schema      derive_schema / parse_json_input: TrussSchema and fast body validation
injection   Secrets, LazyDataResolver, read_environment, instantiate: constructor kwargs
"""

from __future__ import annotations

from trestle.contract.discovery import evict_model_modules, import_model_class, reload_model_class
from trestle.contract.injection import (
    DEFAULT_ENVIRONMENT_PATH,
    DEFAULT_SECRETS_DIR,
    INJECTABLE_NAMES,
    SECRET_ENV_PREFIX,
    LazyDataResolver,
    Secrets,
    instantiate,
    read_environment,
    secret_missing_message,
)
from trestle.contract.methods import (
    GENERATOR_WITH_POSTPROCESS,
    RESPONSE_WITH_POSTPROCESS,
    ROUTE_METHODS,
    ArgForm,
    CallKind,
    MethodDescriptor,
    ModelDescriptor,
    describe_method,
    describe_model,
    is_request_type,
)
from trestle.contract.schema import (
    TrussSchema,
    derive_schema,
    format_validation_error,
    parse_json_input,
    validate_python_input,
)

__all__ = [
    "DEFAULT_ENVIRONMENT_PATH",
    "DEFAULT_SECRETS_DIR",
    "GENERATOR_WITH_POSTPROCESS",
    "INJECTABLE_NAMES",
    "RESPONSE_WITH_POSTPROCESS",
    "ROUTE_METHODS",
    "SECRET_ENV_PREFIX",
    "ArgForm",
    "CallKind",
    "LazyDataResolver",
    "MethodDescriptor",
    "ModelDescriptor",
    "Secrets",
    "TrussSchema",
    "derive_schema",
    "describe_method",
    "describe_model",
    "evict_model_modules",
    "format_validation_error",
    "import_model_class",
    "instantiate",
    "is_request_type",
    "parse_json_input",
    "read_environment",
    "reload_model_class",
    "secret_missing_message",
    "validate_python_input",
]

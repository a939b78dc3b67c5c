"""``loss_module``: a loss function -> a thin ``nn.Module`` that stores config and calls it."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec

from torch import Tensor, nn

P = ParamSpec("P")


def _is_tensor_config(parameter: inspect.Parameter) -> bool:
    """A constructor argument kept as a buffer: annotated as a tensor, or a tensor default."""
    annotation = parameter.annotation
    if isinstance(annotation, str):
        return "Tensor" in annotation and "Callable" not in annotation
    return isinstance(parameter.default, Tensor) or "Tensor" in str(annotation)


def _config_repr(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor(shape={tuple(value.shape)})"
    if callable(value):
        return getattr(value, "__name__", repr(value))
    return repr(value)


class LossModule(nn.Module, Generic[P]):
    """Base of every generated loss module; subclasses set ``_fn``, ``_inputs``, ``_config``.

    ``LossModule[P]`` for a loss ``fn: Callable[P, Tensor]``: to a type checker, calling the
    module takes ``fn``'s arguments (``funcloss.nn``'s classes have exact stubs).
    """

    _fn: Callable[..., Tensor]
    _fn_name: str
    _inputs: tuple[str, ...]
    _config: tuple[inspect.Parameter, ...]
    _config_names: tuple[str, ...]
    _required: int
    _positional: int
    _buffers_config: frozenset[str]
    _check_config: Callable[..., None] | None
    _checked_config: tuple[str, ...]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        cls = type(self)
        signature = inspect.Signature(list(cls._config))
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{cls.__name__}: {error}.") from None
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            if name in cls._buffers_config:
                if value is not None and not isinstance(value, Tensor):
                    raise TypeError(
                        f"{cls.__name__}: `{name}` must be a torch.Tensor or None, "
                        f"got {type(value).__name__}."
                    )
                self.register_buffer(name, value)
            elif isinstance(value, Tensor):
                # Any tensor config (an unannotated ``weight=None`` given a tensor) is state:
                # in ``state_dict``, moved by ``.to()``/``.double()``.
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)
        check = cls._check_config
        if check is not None:
            config = {name: bound.arguments[name] for name in cls._checked_config}
            try:
                check(**config)
            except (TypeError, ValueError) as error:
                # The rule names the function; at construction, name the class.
                message = str(error).replace(f"{cls._fn_name}:", f"{cls.__name__}:", 1)
                raise type(error)(message) from None

    if TYPE_CHECKING:

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Tensor: ...

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        config = {name: getattr(self, name) for name in self._config_names}
        # Inputs past the function's required ones (``forward_args``) may be keyword-only there.
        required = self._required
        positional = self._inputs[: self._positional]
        if len(args) > len(positional):
            # Never drop an input silently (a weight passed positionally would be ignored), nor
            # take it as the mask.
            raise TypeError(
                f"{type(self).__name__}: forward takes at most {len(positional)} positional "
                f"inputs ({', '.join(positional)}), got {len(args)}."
            )
        for key in kwargs:
            if key not in self._inputs:
                self._bad_forward_keyword(key, kwargs[key])
        extra = dict(zip(positional[required:], args[required:], strict=False))
        return type(self)._fn(*args[:required], **extra, **kwargs, **config)

    def _bad_forward_keyword(self, key: str, value: Any) -> None:
        name = type(self).__name__
        if key in self._config_names:
            raise TypeError(
                f"{name}: `{key}` is constructor config, not a forward argument, got "
                f"{key}={_config_repr(value)}. Set it at construction ({name}({key}=...)) or "
                f"change it on the module (module.{key} = ...)."
            )
        raise TypeError(
            f"{name}: forward got an unexpected keyword `{key}`; it takes "
            f"{', '.join(self._inputs)}."
        )

    def extra_repr(self) -> str:
        return ", ".join(f"{p.name}={_config_repr(getattr(self, p.name))}" for p in self._config)


def _class_name(fn_name: str) -> str:
    """``cross_entropy`` -> ``CrossEntropyLoss``; ``huber_loss`` -> ``HuberLoss``; a name that
    is already CamelCase (a decorated ``def MyLoss(...)``) is kept."""
    if fn_name[:1].isupper():
        return fn_name
    words = fn_name.strip("_").split("_")
    if words[-1] != "loss":
        words.append("loss")
    return "".join(word[:1].upper() + word[1:] for word in words)


def loss_module(
    fn: Callable[P, Tensor] | None = None,
    *,
    name: str | None = None,
    module: str | None = None,
    forward_args: tuple[str, ...] = (),
) -> type[LossModule[P]]:
    r"""Build a thin ``nn.Module`` class from a loss function.

    Parameters without a default become ``forward`` arguments; parameters with a default become
    constructor arguments (keyword-only where they are keyword-only in ``fn``). Tensor-valued
    config (annotated ``Tensor | None``, or with a tensor default) is registered as a buffer, so
    ``state_dict()`` holds it and ``.to()`` moves it. The module holds no other state, pickles
    (when the class is bound to ``name`` in ``module``), deep-copies, and works with
    ``torch.func.functional_call`` and ``torch.compile(fullgraph=True)``. A mask argument
    named ``where`` is a ``forward`` argument (it is data). If ``fn`` carries a config check
    (``fn.check_config``, attached by funcloss's own losses), the constructor runs it, so bad
    config fails at construction rather than at the first forward.

    ``fn`` may be a ``functools.partial`` (its bound arguments become the constructor's
    defaults, keyword-only) or any callable with a signature; the class name is derived from
    the underlying function's name, and must be given (``name=``) for a lambda or a callable
    object. Config passed to ``forward`` (``module(x, t, gamma=3.0)``) is an error that says
    to set it at construction: a module's config is its state.

    As a decorator, ``@loss_module`` on ``def MyLoss(input, target, ...)`` makes the function
    the class (the class keeps the CamelCase name it is bound to, so it pickles; the function
    is no longer reachable). To keep the function usable, call it instead:
    ``MyLoss = loss_module(my_loss)``. The form with arguments (``@loss_module(name=...)``)
    is not offered: it would bind a class under a name that is not the class's.

    Args:
        fn: the loss function.
        name: the class name; by default ``fn``'s name in CamelCase with a ``Loss`` suffix.
        module: the module the class is exported from (for pickle); by default the caller's.
        forward_args: parameters with a default that are ``forward`` arguments all the same:
            optional tensors the model owns, such as ``linear_cross_entropy``'s ``linear_bias``.

    Returns:
        The ``nn.Module`` subclass.

    Examples:
        >>> def scaled_l1(input, target, scale: float = 1.0):
        ...     return scale * (input - target).abs().mean()
        >>> ScaledL1Loss = loss_module(scaled_l1)
        >>> ScaledL1Loss(scale=2.0)
        ScaledL1Loss(scale=2.0)
        >>> ScaledL1Loss(scale=2.0)(torch.ones(3), torch.zeros(3))
        tensor(2.)
    """
    if fn is None:
        raise TypeError(
            "loss_module: `fn` must be given, got only keyword arguments. Write "
            "MyLoss = loss_module(my_loss, name=...); as a decorator, use a bare @loss_module "
            "on def MyLoss(...)."
        )
    if module is None:
        module = sys._getframe(1).f_globals.get("__name__", "__main__")
    if not callable(fn) or isinstance(fn, type):
        raise TypeError(f"loss_module: `fn` must be a function, got {type(fn).__name__}.")
    base = _underlying(fn)
    fn_name = getattr(base, "__name__", None)
    if name is None and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        shown = fn_name if isinstance(fn_name, str) else f"a {type(base).__name__} object"
        raise TypeError(
            f"loss_module: `name` must be given for {shown}, which has no function name to "
            "derive the class name from, e.g. loss_module(fn, name='MyLoss')."
        )
    fn_name = fn_name if isinstance(fn_name, str) else name
    parameters = list(inspect.signature(fn).parameters.values())
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    if any(p.kind in variadic for p in parameters):
        raise TypeError(f"loss_module: `fn` must not take *args or **kwargs, got {fn_name}.")
    empty = inspect.Parameter.empty
    unknown = set(forward_args) - {p.name for p in parameters}
    if unknown:
        raise TypeError(
            f"loss_module: `forward_args` must name parameters of {fn_name}, got {sorted(unknown)}."
        )

    def is_input(p: inspect.Parameter) -> bool:
        # A mask is data, not config: ``where`` is always a forward argument.
        return p.default is empty or p.name in forward_args or p.name == "where"

    inputs = tuple(p.name for p in parameters if is_input(p))
    config = tuple(p for p in parameters if not is_input(p))
    class_name = name or _class_name(str(fn_name))
    forward_signature = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [p for p in parameters if is_input(p)]
    )
    where = f"{getattr(base, '__module__', None) or module}.{fn_name}"
    namespace = {
        "_fn": staticmethod(fn),
        "_fn_name": str(fn_name),
        "_inputs": inputs,
        "_required": sum(p.default is empty for p in parameters),
        # a keyword-only ``where`` (the last input) is never taken positionally
        "_positional": len(inputs)
        - any(p.name == "where" and p.kind == p.KEYWORD_ONLY for p in parameters),
        "_config": config,
        "_config_names": tuple(p.name for p in config),
        "_buffers_config": frozenset(p.name for p in config if _is_tensor_config(p)),
        "__module__": module,
        "__qualname__": class_name,
        "__doc__": f"Module form of :func:`{where}`; constructor arguments are its config.",
    }
    check = getattr(fn, "check_config", None)
    checked: tuple[str, ...] = ()
    if check is not None:
        accepted = inspect.signature(check).parameters
        checked = tuple(p.name for p in config if p.name in accepted)
    namespace["_check_config"] = None if check is None else staticmethod(check)
    namespace["_checked_config"] = checked
    cls: type[LossModule[P]] = type(class_name, (LossModule,), namespace)

    def forward(self: LossModule[P], *args: Any, **kwargs: Any) -> Tensor:
        return LossModule.forward(self, *args, **kwargs)

    forward.__signature__ = forward_signature  # type: ignore[attr-defined]
    forward.__qualname__ = f"{class_name}.forward"
    forward.__doc__ = f"Call :func:`{fn_name}` with this module's config."
    cls.forward = forward  # type: ignore[method-assign]
    cls.__signature__ = inspect.Signature(list(config))  # type: ignore[attr-defined]
    return cls


def _underlying(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function under any ``functools.partial`` layers (which has the name)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn

"""``loss_module``: a loss function -> a thin ``nn.Module`` that stores config and calls it."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn


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


class _LossModule(nn.Module):
    """Base of every generated loss module; subclasses set ``_fn``, ``_inputs``, ``_config``."""

    _fn: Callable[..., Tensor]
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
            else:
                setattr(self, name, value)
        check = cls._check_config
        if check is not None:
            config = {name: bound.arguments[name] for name in cls._checked_config}
            try:
                check(**config)
            except (TypeError, ValueError) as error:
                # The rule names the function; at construction, name the class.
                message = str(error).replace(f"{cls._fn.__name__}:", f"{cls.__name__}:", 1)
                raise type(error)(message) from None

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
        extra = dict(zip(positional[required:], args[required:], strict=False))
        return type(self)._fn(*args[:required], **extra, **kwargs, **config)

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
    fn: Callable[..., Tensor] | None = None,
    *,
    name: str | None = None,
    module: str | None = None,
    forward_args: tuple[str, ...] = (),
) -> Any:
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

    Args:
        fn: the loss function. Without it, returns a decorator.
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
    if module is None:
        module = sys._getframe(1).f_globals.get("__name__", "__main__")

    def build(fn: Callable[..., Tensor]) -> type[nn.Module]:
        if not callable(fn) or isinstance(fn, type):
            raise TypeError(f"loss_module: `fn` must be a function, got {type(fn).__name__}.")
        parameters = list(inspect.signature(fn).parameters.values())
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        if any(p.kind in variadic for p in parameters):
            raise TypeError(
                f"loss_module: `fn` must not take *args or **kwargs, got {fn.__name__}."
            )
        empty = inspect.Parameter.empty
        unknown = set(forward_args) - {p.name for p in parameters}
        if unknown:
            raise TypeError(
                f"loss_module: `forward_args` must name parameters of {fn.__name__}, "
                f"got {sorted(unknown)}."
            )

        def is_input(p: inspect.Parameter) -> bool:
            # A mask is data, not config: ``where`` is always a forward argument.
            return p.default is empty or p.name in forward_args or p.name == "where"

        inputs = tuple(p.name for p in parameters if is_input(p))
        config = tuple(p for p in parameters if not is_input(p))
        class_name = name or _class_name(fn.__name__)
        forward_signature = inspect.Signature(
            [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            + [p for p in parameters if is_input(p)]
        )
        namespace = {
            "_fn": staticmethod(fn),
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
            "__doc__": f"Module form of :func:`{fn.__module__}.{fn.__name__}`; "
            "constructor arguments are its config.",
        }
        check = getattr(fn, "check_config", None)
        checked: tuple[str, ...] = ()
        if check is not None:
            accepted = inspect.signature(check).parameters
            checked = tuple(p.name for p in config if p.name in accepted)
        namespace["_check_config"] = None if check is None else staticmethod(check)
        namespace["_checked_config"] = checked
        cls = type(class_name, (_LossModule,), namespace)

        def forward(self: _LossModule, *args: Any, **kwargs: Any) -> Tensor:
            return _LossModule.forward(self, *args, **kwargs)

        forward.__signature__ = forward_signature  # type: ignore[attr-defined]
        forward.__qualname__ = f"{class_name}.forward"
        forward.__doc__ = f"Call :func:`{fn.__name__}` with this module's config."
        cls.forward = forward  # type: ignore[method-assign]
        cls.__init__.__doc__ = None
        init_signature = inspect.Signature(list(config))
        cls.__signature__ = init_signature  # type: ignore[attr-defined]
        return cls

    if fn is None:
        return build
    return build(fn)

"""The ``Backend`` contract: what the compile pipeline does differently per kind of TVM target.

The pipeline (:mod:`pose_tuner.compile.pipeline`) and tuning
(:mod:`pose_tuner.compile.tuning`) never test a target's kind: they ask
:func:`pose_tuner.compile.backends.backend_for` for the backend of the target's kind and
call its methods. A new kind of target is one file in this folder and one entry in
:data:`pose_tuner.compile.backends.BACKENDS`.
"""

from __future__ import annotations


class UnsupportedTargetKind(ValueError):
    """No compile backend serves this TVM target kind; the message names the known ones."""


class Backend:
    """How to compile and tune for one TVM target kind (``kind``, e.g. ``llvm``, ``cuda``).

    The contract, in the order the pipeline calls it (every method has a default for
    backends that need nothing there):

    * ``tensor_intrin_modules(target)`` – the modules of TVM's ``tvm.s_tir.tensor_intrin``
      that this kind's design space may name for ``target`` (``("x86",)``, ``("cuda",)``):
      :meth:`load_tensor_intrinsics` imports only those
      (:func:`pose_tuner.compile.tensor_intrin.import_only`), where TVM would import them
      all (~20 s per process). None (the default) leaves TVM's own import of all of them.
    * ``register_intrinsics(int8_kernels)`` – make available the tensor intrinsics and
      custom schedule rules that tuning, and replaying tuning records, may use.
      ``int8_kernels`` are names in :data:`pose_tuner.compile.kernels.KERNELS`: the
      target's own ``int8_kernel`` when tuning, and those the tuning records name when
      applying them; a backend whose targets have no such kernels refuses a non-empty
      list. Idempotent; needs no such hardware.
    * ``enable_codegen()`` – set up what this kind's code generation needs outside TVM (a
      kernel compiler, a runtime library), before MetaSchedule extracts tasks or anything
      is built. Idempotent.
    * ``space_generator(target, int8_kernel)`` – MetaSchedule's design space for the
      target's tasks; ``int8_kernel`` (the target's, or None) tiles int8 reductions with
      that kernel's intrinsic. A backend refuses a kernel it cannot use.
    * ``prepare_for_device(mod, target)`` – the last transformation of a prepared (and
      possibly tuned) module before it is built: e.g. default schedules for the functions
      no tuning record covers. Identity by default.
    * ``build(mod, target)`` – compile a module (the whole model, or one MetaSchedule
      candidate) into a runtime module / VM executable.
    * ``artifact_info(path)`` – what an exported library holds that its users should
      know (``tuner build`` prints it): e.g. the GPU code images. Empty by default.

    And one fact the int8 rewrite asks (``host_kernels``): whether kernels written as
    plain loops for the host CPU (the packed channel gathers of
    :mod:`pose_tuner.compile.int8.channels`) run on this kind's device. False by default:
    on a GPU they would be compiled as host code reading device memory.
    """

    #: the TVM target kind name this backend serves (its key in the registry)
    kind: str = ""
    #: whether hand-scheduled host-CPU kernels run on this kind's device
    host_kernels: bool = False

    def tensor_intrin_modules(self, target) -> tuple[str, ...] | None:
        return None

    def load_tensor_intrinsics(self, target) -> None:
        """Import the tensor intrinsics :meth:`tensor_intrin_modules` names for
        ``target``, and none of TVM's others; before tuning or applying records."""
        modules = self.tensor_intrin_modules(target)
        if modules is not None:
            from pose_tuner.compile.tensor_intrin import import_only

            import_only(modules)

    def register_intrinsics(self, int8_kernels: list[str] | tuple[str, ...] = ()) -> None:
        if int8_kernels:
            raise ValueError(
                f"the int8 kernels {', '.join(int8_kernels)} are CPU tensor intrinsics; "
                f"TVM target kind {self.kind!r} has none")

    def enable_codegen(self) -> None:
        return None

    def space_generator(self, target, int8_kernel: str | None = None):
        raise NotImplementedError

    def prepare_for_device(self, mod, target):
        return mod

    def build(self, mod, target):
        import tvm

        return tvm.compile(mod, target=target)

    def artifact_info(self, path: str) -> dict:
        return {}

    def _no_int8_kernel(self, int8_kernel: str | None) -> None:
        """Refuse an int8 kernel on a backend that has none."""
        if int8_kernel is not None:
            raise ValueError(
                f"int8 kernel {int8_kernel!r} is a CPU tensor intrinsic; TVM target kind "
                f"{self.kind!r} has no int8 kernels (its hardware target should name none)")

"""The "Fit FacRNN" widget: fits the open file in a worker thread, then shows the groups."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from magicgui.widgets import (
    CheckBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import QObject, Signal

from ..fitting import FitCancelled, FitRequest, fit_session
from ..layers import GROUP, ROIS, SCENE_KEY, TRACES, group_layers, label_colormap, roi_features
from ..scene import Scene, open_scene
from ._common import current_scene, layers_of


def show_fit(viewer: Any, scene: Scene) -> None:
    """Replace the scene's group layers by those of its current fit and recolour its ROIs."""
    from napari.layers import Layer

    for layer in layers_of(viewer, scene, GROUP):
        viewer.layers.remove(layer)
    for layer in layers_of(viewer, scene, ROIS):
        layer.colormap = label_colormap(scene)
        layer.features = roi_features(scene)
    for layer in layers_of(viewer, scene, TRACES):
        layer.visible = False
    for data, kwargs, kind in group_layers(scene):
        viewer.add_layer(Layer.create(data, kwargs, kind))


def add_scene(viewer: Any, scene: Scene) -> None:
    """Add every layer of a scene to the viewer."""
    from napari.layers import Layer

    from ..layers import scene_layers

    for data, kwargs, kind in scene_layers(scene):
        viewer.add_layer(Layer.create(data, kwargs, kind))


class _EpochRelay(QObject):
    """Carries the worker thread's per-epoch progress to the GUI thread (a queued signal:
    Qt widgets, the progress bar among them, must only be touched from the GUI thread)."""

    epoch = Signal(int, float)


class FitWidget(Container):
    """Fit FacRNN to the ROI traces of the open NWB file without freezing the viewer.

    The fit runs in a napari thread worker with a progress bar; when it is done its group
    layers replace any shown for that file, and, with "save", the results are written into
    NWB (``<stem>_facrnn.nwb`` next to the file unless an output is given).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer: Any):
        self.viewer = napari_viewer
        self.file = FileEdit(label="NWB file", mode="r", filter="*.nwb")
        self.series = LineEdit(label="series", value="", tooltip="RoiResponseSeries; empty: dF/F")
        self.accepted_only = CheckBox(label="accepted ROIs only", value=True)
        self.bin_size = FloatSpinBox(
            label="bin_size (s)",
            value=0.0,
            min=0.0,
            max=10.0,
            step=0.001,
            tooltip="0: one bin per frame",
        )
        self.n_groups = SpinBox(label="n_groups", value=2, min=1, max=16)
        self.group_rank = SpinBox(label="group_rank", value=3, min=1, max=16)
        self.beta = FloatSpinBox(label="beta", value=20.0, min=0.0, max=1e4)
        self.epochs = SpinBox(label="epochs", value=100, min=1, max=100_000)
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.save = CheckBox(label="save results to NWB", value=True)
        self.output = FileEdit(label="output (optional)", mode="w", filter="*.nwb")
        self.fit_button = PushButton(text="Fit FacRNN")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.file,
                self.series,
                self.accepted_only,
                self.bin_size,
                self.n_groups,
                self.group_rank,
                self.beta,
                self.epochs,
                self.seed,
                self.save,
                self.output,
                self.fit_button,
                self.cancel_button,
                self.status,
            ]
        )
        self.worker = None
        self.result = None
        self.error: BaseException | None = None
        self._request: FitRequest | None = None
        self._bar = None
        self._cancel = threading.Event()
        self._relay = _EpochRelay()
        self._relay.epoch.connect(self._on_epoch)
        # closing the widget (or the viewer) stops a running fit after its current epoch
        self.native.destroyed.connect(self._cancel.set)
        self.fit_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.viewer.layers.events.inserted.connect(self._default_file)
        self._default_file()

    def _default_file(self, event: Any = None) -> None:
        scene = current_scene(self.viewer)
        if scene is not None and not str(self.file.value).strip(". "):
            self.file.value = scene.path

    def request(self) -> FitRequest:
        path = Path(str(self.file.value))
        output = str(self.output.value).strip()
        return FitRequest(
            path=path,
            series=self.series.value.strip() or None,
            accepted_only=self.accepted_only.value,
            bin_size=self.bin_size.value or None,
            n_groups=self.n_groups.value,
            group_rank=self.group_rank.value,
            beta=self.beta.value,
            max_epochs=self.epochs.value,
            seed=self.seed.value,
            save=self.save.value,
            output=None if output in ("", ".") else output,
        )

    def start(self, *_: Any):
        """Start the fit in a worker thread; returns the worker (None if one is running)."""
        from napari.utils import progress
        from superqt.utils import create_worker  # napari's wrapper mis-reports errors (0.9)

        if self.worker is not None:
            return None
        request = self.request()
        if not request.path.exists():
            self.status.value = f"no such file: {request.path}"
            return None
        self._cancel.clear()
        self.result = self.error = None
        self._request = request
        self._bar = progress(total=request.max_epochs, desc="FacRNN fit")
        relay = self._relay

        def on_epoch(epoch: int, terms: dict[str, float]) -> None:  # in the worker thread
            relay.epoch.emit(epoch, terms["total"])

        worker = create_worker(
            fit_session,
            request,
            on_epoch,
            self._cancel.is_set,
            _start_thread=False,
            _connect={"returned": self._done, "errored": self._failed},
        )
        worker.finished.connect(self._finished)
        self.worker = worker
        self.fit_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = f"fitting {request.path.name} ({request.max_epochs} epochs)..."
        worker.start()
        return worker

    def _on_epoch(self, epoch: int, total: float) -> None:
        bar = self._bar  # updating the bar may process events, and the fit may end there
        if bar is None:
            return
        bar.update(1)
        if self._bar is bar:
            bar.set_description(f"FacRNN fit, loss {total:.4g}")

    def cancel(self, *_: Any) -> None:
        """Stop the running fit after its current epoch."""
        self._cancel.set()

    def _finished(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.worker = None
        self.fit_button.enabled = True
        self.cancel_button.enabled = False

    def _failed(self, err: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.error = err
        if isinstance(err, FitCancelled):
            self.status.value = str(err)
            return
        self.status.value = f"fit failed: {err}"
        show_error(f"FacRNN fit failed: {err}")

    def _done(self, value: Any) -> None:
        from napari.utils.notifications import show_error

        results, saved = value
        self.result = results
        path = str(self._request.path)  # the file fitted, whatever the field says now
        try:
            scene = next(
                (
                    layer.metadata[SCENE_KEY]
                    for layer in self.viewer.layers
                    if SCENE_KEY in layer.metadata
                    and Path(layer.metadata[SCENE_KEY].path).resolve() == Path(path).resolve()
                ),
                None,
            )
            if scene is None:
                scene = open_scene(path)
                scene.set_results(results, saved_to=None if saved is None else str(saved))
                add_scene(self.viewer, scene)
            else:
                scene.set_results(results, saved_to=None if saved is None else str(saved))
                show_fit(self.viewer, scene)
        except (OSError, ValueError) as err:  # NWBReadError included
            self.error = err
            self.status.value = f"fit done, but it cannot be shown: {err}"
            show_error(self.status.value)
            return
        where = f"saved to {saved}" if saved is not None else "not saved"
        self.status.value = f"{results.name}: {where}"

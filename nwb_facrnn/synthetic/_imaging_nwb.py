"""NWB file of the synthetic imaging session (:mod:`.imaging`, whose docstring gives the layout).

The movie as an ``OnePhotonSeries`` with backend-specific chunking and compression, the
imaging plane, the segmentation, the summary images and the raw and dF/F ROI traces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import _nwb

if TYPE_CHECKING:
    from .imaging import ImagingTruth

# Movie chunking (frames per chunk) and gzip level.
_CHUNK_FRAMES = 50
_GZIP_LEVEL = 4

Backend = Literal["hdf5", "zarr"]


def _wrap_movie(movie: np.ndarray, backend: Backend | None):
    """The movie with the chunking and compression settings of ``backend``."""
    chunks = (min(_CHUNK_FRAMES, movie.shape[0]), *movie.shape[1:])
    if backend == "hdf5":
        from hdmf.backends.hdf5.h5_utils import H5DataIO

        return H5DataIO(
            movie, chunks=chunks, compression="gzip", compression_opts=_GZIP_LEVEL, shuffle=True
        )
    if backend == "zarr":
        from hdmf_zarr.utils import ZarrDataIO
        from numcodecs import Blosc

        return ZarrDataIO(
            movie,
            chunks=chunks,
            compressor=Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE),
        )
    return movie


def build_nwbfile(
    truth: ImagingTruth,
    p: Any,
    movie: np.ndarray,
    mean_image: np.ndarray,
    max_image: np.ndarray,
    backend: Backend | None,
):
    """The NWBFile of a simulated session: ``truth`` with its parameters ``p``, the movie and
    its summary images, the movie wrapped for ``backend``."""
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage
    from pynwb.ophys import (
        DfOverF,
        Fluorescence,
        ImageSegmentation,
        OnePhotonSeries,
        OpticalChannel,
        RoiResponseSeries,
    )

    n_frames, (height, width) = truth.n_frames, truth.frame_shape
    nwbfile = _nwb.new_nwbfile(
        kind="imaging",
        seed=truth.seed,
        params=vars(p),
        animal="mouse",
        session_description=(
            f"Simulated one-photon voltage imaging of {truth.n_rois} somata in hippocampal "
            f"CA1: {n_frames} frames of {height} x {width} pixels at {truth.rate:g} Hz."
        ),
        experiment_description=(
            f"the subthreshold voltage of each accepted ROI is driven by one of {truth.n_groups} "
            f"independent groups of {truth.group_rank}-D chaotic latents "
            f"({', '.join(truth.systems)}); spikes fire above a voltage threshold."
        ),
        keywords=["voltage imaging", "one-photon", "hippocampus", "Voltron2"],
    )

    camera = nwbfile.create_device(
        name="sCMOS camera",
        description="Simulated scientific CMOS camera (16-bit, global shutter).",
    )
    channel = OpticalChannel(
        name="Green",
        description="Emission of the JF525 dye bound to Voltron2 (green/yellow).",
        emission_lambda=549.0,
    )
    plane = nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=channel,
        description="Single focal plane through the CA1 pyramidal layer.",
        device=camera,
        excitation_lambda=525.0,
        imaging_rate=truth.rate,
        indicator="Voltron2-JF525",
        location="Field CA1",
        grid_spacing=[1.0e-6, 1.0e-6],
        grid_spacing_unit="meters",
    )
    series = OnePhotonSeries(
        name="OnePhotonSeries",
        description=(
            "Raw camera frames (counts, offset 100): background + ROI fluorescence + read noise."
        ),
        data=_wrap_movie(movie, backend),
        imaging_plane=plane,
        unit="n.a.",
        rate=truth.rate,
        starting_time=truth.starting_time,
        exposure_time=1.0 / truth.rate,
        dimension=[height, width],
        device=camera,
    )
    nwbfile.add_acquisition(series)

    ophys = nwbfile.create_processing_module(
        "ophys", "Segmentation, summary images and ROI traces of the voltage-imaging movie."
    )
    segmentation = ImageSegmentation(name="ImageSegmentation")
    ophys.add(segmentation)
    planes = segmentation.create_plane_segmentation(
        name="PlaneSegmentation",
        description="Somata segmented as filled ellipses (image masks, weight 1 inside).",
        imaging_plane=plane,
        reference_images=series,
    )
    planes.add_column(
        "accepted", "True for ROIs accepted as neurons; False for background/neuropil ROIs."
    )
    for i in range(truth.n_rois):
        planes.add_roi(
            id=int(truth.roi_ids[i]),
            image_mask=truth.image_masks[i],
            accepted=bool(truth.accepted[i]),
        )

    ophys.add(
        Images(
            name="summary_images",
            description="Summary images of the OnePhotonSeries movie (camera counts).",
            images=[
                GrayscaleImage(
                    name="mean", data=mean_image, description="Mean over frames of the movie."
                ),
                GrayscaleImage(
                    name="max", data=max_image, description="Maximum over frames of the movie."
                ),
            ],
        )
    )

    # The containers join the file before their series, so that each series' ROI region
    # already shares an ancestor with the PlaneSegmentation when it is attached.
    traces = [
        (
            Fluorescence(name="Fluorescence"),
            truth.fluorescence,
            "a.u.",
            "Raw fluorescence F of each ROI (camera counts per pixel above background); "
            "photobleaches over time.",
        ),
        (
            DfOverF(name="DfOverF"),
            truth.dff,
            "n.a.",
            "dF/F = F / baseline - 1 with an exponential baseline exp(c0 + c1 t) fit to log F "
            "of each ROI by least squares (bleach-corrected).",
        ),
    ]
    for container, data, unit, description in traces:
        ophys.add(container)
        container.add_roi_response_series(
            RoiResponseSeries(
                name="RoiResponseSeries",
                description=description,
                data=data,
                rois=planes.create_roi_table_region(
                    region=list(range(truth.n_rois)), description="All ROIs, accepted or not."
                ),
                unit=unit,
                rate=truth.rate,
                starting_time=truth.starting_time,
            )
        )
    return nwbfile

"""Read and write microscope images and ImageJ masks, keeping the pixel size in nm.

Every reader validates what a microscope image must be (one 2-D greyscale plane, non-empty, finite) and raises
`ImageError` naming the file; every writer goes through a temp file and an atomic rename, so an interrupted run
never leaves a half-written TIFF behind.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from ncseg.io.atomic import atomic_path

TIFF_SUFFIXES = {".tif", ".tiff"}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
EMD_SUFFIXES = {".dm3", ".dm4", ".emd"}
IMAGE_SUFFIXES = TIFF_SUFFIXES | RASTER_SUFFIXES | EMD_SUFFIXES

# Length units found in ImageJ and OME metadata, in nm.
_UNIT_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "pm": 1e-3,
    "mm": 1e6,
}
_SUPPORTED_DTYPES = (np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32, np.float32, np.float64)
# The most pixels an image file may declare: 32768 x 32768, past the largest montage a microscope writes (detector
# frames and montages of 8k-16k are ordinary). A header declaring more is corrupt or hostile; decoding it would
# allocate what it declares (6.7 GiB for a 258-byte TIFF declaring 60000 x 60000 at 16 bit) before failing.
MAX_IMAGE_PIXELS = 2**30
# The most pixel bytes one stored byte decodes to, by TIFF compression: uncompressed stores each, PackBits packs a
# run of at most 128 bytes into 2, and deflate's longest match (258 bytes) costs at least 2 bits: 1032:1. Other
# codecs (LZW, LZMA, JPEG, ...) have no such bound here and are limited by MAX_IMAGE_PIXELS only.
_MOST_DECODED_PER_BYTE = {
    tifffile.COMPRESSION.NONE: 1,
    tifffile.COMPRESSION.PACKBITS: 64,
    tifffile.COMPRESSION.ADOBE_DEFLATE: 1032,
    tifffile.COMPRESSION.DEFLATE: 1032,
}


class ImageError(ValueError):
    """A file that is not a usable microscope image or mask; the message starts with its path."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


@dataclass(frozen=True)
class Micrograph:
    data: np.ndarray  # 2-D, the file's own dtype
    pixel_size_nm: float | None
    path: Path


def _unit_to_nm(unit: str | None) -> float | None:
    if not unit:
        return None
    return _UNIT_NM.get(unit.strip().lower().replace("\\u00b5", "µ"))


def _tiff_pixel_size_nm(tif: tifffile.TiffFile) -> float | None:
    """ImageJ (unit + XResolution), then OME PhysicalSizeX, then a centimetre ResolutionUnit."""
    page = tif.pages[0]
    xres = page.tags.get("XResolution")
    px_per_unit = None
    if xres is not None:
        num, den = xres.value
        px_per_unit = num / den if den and num else None
    if tif.imagej_metadata and px_per_unit:
        scale = _unit_to_nm(tif.imagej_metadata.get("unit"))
        if scale:
            return scale / px_per_unit
    if tif.is_ome and tif.ome_metadata:
        import xml.etree.ElementTree as ET

        for node in ET.fromstring(tif.ome_metadata).iter():
            if node.tag.endswith("Pixels") and "PhysicalSizeX" in node.attrib:
                scale = _unit_to_nm(node.attrib.get("PhysicalSizeXUnit", "µm"))
                return float(node.attrib["PhysicalSizeX"]) * scale if scale else None
    unit_tag = page.tags.get("ResolutionUnit")
    if px_per_unit and unit_tag is not None and int(unit_tag.value) == 3:  # centimetre; inches mean "uncalibrated"
        return 1e7 / px_per_unit
    return None


def _read_tiff(path: Path | str, source: io.BytesIO | None = None) -> tuple[np.ndarray, float | None]:
    """`source`: the file's bytes when they did not come from `path` (a request); `path` names it in errors."""
    try:
        with tifffile.TiffFile(source or path) as tif:
            if not tif.pages:
                raise ImageError(path, "unreadable TIFF (no image directory)")
            header, planes = _page_header(tif, path)
            if len(tif.series) != 1 or planes != 1:
                raise ImageError(path, f"multi-page TIFF ({planes} pages); save one plane per file")
            check_declared_size(header, path, tif.filehandle.size)  # before asarray allocates what it declares
            return tif.asarray(), _tiff_pixel_size_nm(tif)
    except ImageError:
        raise
    except Exception as err:  # tifffile raises many types for corrupt files
        raise ImageError(path, f"unreadable TIFF ({err})") from err


def _read_raster(path: Path | str, source: bytes | None = None) -> np.ndarray:
    import imageio.v3 as iio

    try:
        return np.asarray(iio.imread(path if source is None else source))
    except Exception as err:
        raise ImageError(path, f"unreadable image ({err})") from err


def _read_emd(path: Path) -> tuple[np.ndarray, float | None]:
    """Gatan/Velox formats through the optional rosettasciio extra (`pip install ncseg[formats]`)."""
    try:
        from rsciio import digitalmicrograph, emd
    except ImportError as err:
        raise ImageError(path, "reading .dm3/.dm4/.emd needs the optional extra: pip install 'ncseg[formats]'") from err
    reader = emd.file_reader if path.suffix.lower() == ".emd" else digitalmicrograph.file_reader
    try:
        signal = next(s for s in reader(str(path)) if np.asarray(s["data"]).ndim == 2)
    except StopIteration as err:
        raise ImageError(path, "holds no 2-D image") from err
    except Exception as err:
        raise ImageError(path, f"unreadable ({err})") from err
    axis = signal["axes"][-1]
    scale = _unit_to_nm(str(axis.get("units", "")))
    return np.asarray(signal["data"]), axis["scale"] * scale if scale else None


def _check_plane(path: Path | str, data: np.ndarray) -> np.ndarray:
    if data.size == 0:
        raise ImageError(path, "empty image (no pixels)")
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        channels = data[..., :3]
        if data.shape[-1] == 4 and channels.min() == channels.max() and data[..., 3].min() != data[..., 3].max():
            raise ImageError(
                path,
                "drawn in the alpha (transparency) channel only, its colour is blank; flatten it onto a black "
                "background (ImageJ: Image > Type > 8-bit) and save again",
            )
        if np.array_equal(channels[..., 0], channels[..., 1]) and np.array_equal(channels[..., 0], channels[..., 2]):
            return channels[..., 0]  # greyscale saved as RGB(A): lossless to take one channel
        raise ImageError(path, f"colour (RGB) image of shape {data.shape}; HAADF images are greyscale")
    if data.ndim != 2:
        raise ImageError(path, f"expected one 2-D greyscale plane, got an array of shape {data.shape}")
    if data.dtype.type not in _SUPPORTED_DTYPES:
        raise ImageError(path, f"unsupported pixel type {data.dtype}")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ImageError(path, "contains NaN or infinite pixels")
    return data


def read_image(path: Path | str) -> Micrograph:
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        data, pixel_size = _read_tiff(path)
    elif suffix in EMD_SUFFIXES:
        data, pixel_size = _read_emd(path)
    elif suffix in RASTER_SUFFIXES:
        data, pixel_size = _read_raster(path), None
    else:
        raise ImageError(path, f"unsupported file type {suffix!r}; use one of {sorted(IMAGE_SUFFIXES)}")
    return Micrograph(_check_plane(path, data), pixel_size, path)


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode_image(data: bytes, name: str) -> np.ndarray:
    """An image file's bytes (TIFF or PNG: what a client sends the served model) -> its checked 2-D plane.

    The same checks as for a file on disk; `name` identifies it in the error (e.g. "request image 0").
    """
    if data[:4] in _TIFF_MAGIC:
        plane, _ = _read_tiff(name, io.BytesIO(data))
    elif data[:8] == _PNG_MAGIC:
        plane = _read_raster(name, data)
    else:
        raise ImageError(name, "not a TIFF or PNG file")
    return _check_plane(name, plane)


@dataclass(frozen=True)
class ImageHeader:
    """What an image file declares about its pixels: what decoding it will allocate."""

    height: int
    width: int
    samples: int  # values per pixel: 1 greyscale, 3 or 4 RGB(A)
    dtype: np.dtype
    least_file_bytes: int = 0  # the fewest bytes that can store the pixels, at its compression's best; 0: unknown

    @property
    def pixels(self) -> int:
        return self.height * self.width


def check_declared_size(
    header: ImageHeader, name: Path | str, file_size: int, max_pixels: int = MAX_IMAGE_PIXELS
) -> None:
    """Refuse, from the header and before decoding allocates a byte, an image of more than `max_pixels` or one whose
    pixels a file of `file_size` bytes cannot hold (a truncated or corrupt file, or a few bytes declaring gigabytes)."""
    if header.pixels > max_pixels:
        raise ImageError(name, f"{header.height}x{header.width} px exceeds the limit of {max_pixels} px")
    if header.least_file_bytes > file_size:
        raise ImageError(
            name,
            f"declares {header.height}x{header.width} px, which take at least {header.least_file_bytes:,} bytes as "
            f"stored, but the file has {file_size:,}: it is truncated or corrupt",
        )


# PNG colour type -> values per decoded pixel (a palette decodes to RGB).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def read_header(data: bytes, name: str) -> ImageHeader:
    """The size and pixel type a TIFF or PNG file declares, read from its header without decoding a pixel.

    A few kB of zlib TIFF can declare a 40000 x 40000 image whose decoding alone takes gigabytes: a server checks
    this before it decodes. Refuses here, as `decode_image` would, what is not one greyscale(-like) plane of a
    supported pixel type, so the header bounds the memory decoding takes (at most 4 values of 8 bytes per pixel).
    """
    if data[:4] in _TIFF_MAGIC:
        header, planes = _tiff_header(data, name)
        if planes != 1:
            raise ImageError(name, f"multi-page TIFF ({planes} pages); save one plane per file")
    elif data[:8] == _PNG_MAGIC:
        header = _png_header(data, name)
    else:
        raise ImageError(name, "not a TIFF or PNG file")
    if header.samples not in (1, 3, 4):
        raise ImageError(name, f"expected one greyscale plane, the file declares {header.samples} values per pixel")
    if header.dtype.type not in _SUPPORTED_DTYPES:
        raise ImageError(name, f"unsupported pixel type {header.dtype}")
    return header


def _tiff_header(data: bytes, name: str) -> tuple[ImageHeader, int]:
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            return _page_header(tif, name)
    except ImageError:
        raise
    except Exception as err:  # tifffile raises many types for corrupt files
        raise ImageError(name, f"unreadable TIFF ({err})") from err


def _page_header(tif: tifffile.TiffFile, name: Path | str) -> tuple[ImageHeader, int]:
    """The first page's header and the number of planes the file holds (pages, or ImageJ frames in one page)."""
    page = tif.pages.first
    values = max(page.imagelength * page.imagewidth * page.samplesperpixel, 1)
    planes = max(len(tif.pages), tif.series[0].size // values)
    if page.dtype is None:
        raise ImageError(name, f"unsupported pixel type ({page.bitspersample}-bit, sample format {page.sampleformat})")
    ratio = _MOST_DECODED_PER_BYTE.get(page.compression)
    stored = -(-page.imagelength * page.imagewidth * page.samplesperpixel * page.bitspersample // 8)  # rounded up
    least = -(-stored // ratio) if ratio else 0
    return ImageHeader(page.imagelength, page.imagewidth, page.samplesperpixel, page.dtype, least), planes


def _png_header(data: bytes, name: str) -> ImageHeader:
    """From the IHDR chunk, which the PNG format puts first: width and height at bytes 16-24, big-endian."""
    if len(data) < 26 or data[12:16] != b"IHDR" or data[25] not in _PNG_SAMPLES:
        raise ImageError(name, "unreadable PNG (no valid IHDR header)")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if _png_is_animated(data):
        raise ImageError(name, "animated PNG (several frames); send one plane per file")
    return ImageHeader(height, width, _PNG_SAMPLES[data[25]], np.dtype(np.uint16 if data[24] == 16 else np.uint8))


def _png_is_animated(data: bytes) -> bool:
    """An APNG declares its frames in an acTL chunk before the image data; each frame would be decoded, so the
    first header alone does not bound the memory decoding takes."""
    position = 8
    while position + 8 <= len(data):
        length, kind = int.from_bytes(data[position : position + 4], "big"), data[position + 4 : position + 8]
        if kind == b"acTL":
            return True
        if kind == b"IDAT":
            return False
        position += 12 + length
    return False


def encode_tiff(data: np.ndarray) -> bytes:
    """A zlib-compressed TIFF of `data` in memory: the served model's answer (masks compress ~50x)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, data, compression="zlib")
    return buffer.getvalue()


def read_mask(path: Path | str, foreground: frozenset[int] | None = None) -> np.ndarray:
    """A boolean NC mask from an ImageJ 0/255 (or 0/1) mask, or from a label map with `foreground` labels."""
    return read_mask_and_labels(path, foreground)[0]


def read_mask_and_labels(
    path: Path | str, foreground: frozenset[int] | None = None
) -> tuple[np.ndarray, tuple[int, ...]]:
    """`read_mask` and the values the file holds: a mask that comes out empty is named with what it does hold
    (0, 255 under `--foreground 7` is a wrong option, not an image without NCs)."""
    image = read_image(path)
    values = np.unique(image.data)
    if foreground is not None:
        missing = set(values.tolist()) - {0, *foreground}
        if not np.issubdtype(values.dtype, np.integer) or any(v < 0 for v in missing):
            raise ImageError(path, f"label map must hold non-negative integer labels, found {values[:8].tolist()}")
        return np.isin(image.data, sorted(foreground)), tuple(values.tolist())
    if not set(values.tolist()) <= {0, 255} and not set(values.tolist()) <= {0, 1}:
        shown = ", ".join(str(v) for v in values[:8]) + (" …" if len(values) > 8 else "")
        raise ImageError(path, f"mask is not binary (values {shown}); expected 0/255 or 0/1, or pass --foreground")
    return image.data > 0, tuple(values.tolist())


def read_class_map(path: Path | str, shape: tuple[int, ...]) -> np.ndarray:
    """A per-pixel class map (0 background, 1…N−1 the classes, e.g. support and Pt) as uint8, for the
    auxiliary head; one with other values (255 marks ignored pixels) or not of its image's `shape` is refused."""
    data = read_image(path).data
    values = np.unique(data)
    if not np.issubdtype(values.dtype, np.integer) or values[0] < 0 or values[-1] > 254:
        shown = ", ".join(str(v) for v in values[:8]) + (" …" if len(values) > 8 else "")
        raise ImageError(path, f"class map must hold integer classes 0-254, found {shown}")
    if data.shape != shape:
        raise ImageError(path, f"class map shape {data.shape} differs from its image's {shape}")
    return data.astype(np.uint8)


def _imagej_kwargs(pixel_size_nm: float | None) -> dict:
    """tifffile's arguments for an ImageJ TIFF calibrated in nm (unit + XResolution), which ImageJ, Fiji and
    `_tiff_pixel_size_nm` all read back; none for an uncalibrated image."""
    kwargs: dict = {"imagej": True, "metadata": {"unit": "nm"} if pixel_size_nm else {}}
    if pixel_size_nm:
        kwargs["resolution"] = (1.0 / pixel_size_nm, 1.0 / pixel_size_nm)
    return kwargs


def write_tiff(path: Path, data: np.ndarray, pixel_size_nm: float | None) -> None:
    """An ImageJ-hyperstack TIFF whose calibration ImageJ, Fiji and tifffile all read back in nm."""
    if data.dtype.type not in (np.uint8, np.uint16, np.float32):
        data = data.astype(np.float32)  # ImageJ's 32-bit type; holds every value of a 16/24-bit detector exactly
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, **_imagej_kwargs(pixel_size_nm))


def _class_lut(colours: Sequence[str]) -> np.ndarray:
    """ImageJ's lookup table, (3, 256) uint8: id i shown in `colours[i]` ("#rrggbb"), ids past them black."""
    if len(colours) > 256:
        raise ValueError(f"{len(colours)} colours; an 8-bit lookup table holds 256")
    lut = np.zeros((3, 256), np.uint8)
    for i, colour in enumerate(colours):
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", colour):
            raise ValueError(f"colour {colour!r}: expected #rrggbb")
        lut[:, i] = list(bytes.fromhex(colour[1:]))
    return lut


def write_class_map(path: Path, class_map: np.ndarray, colours: Sequence[str], pixel_size_nm: float | None) -> None:
    """A uint8 class-id map (0 background, 1…K−1 the classes) that Fiji opens in the classes' colours while its
    pixels stay the ids (`read_class_map` reads it back). A single-channel ImageJ image takes its lookup table from
    the TIFF ColorMap (a palette TIFF, as ImageJ itself saves an 8-bit image with a LUT: "8-bit Color"); the same
    table goes into ImageJ's LUTs metadata too, which ImageJ applies to multi-channel images only."""
    values = np.asarray(class_map)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"a class map is a 2-D integer array, got {values.dtype} of shape {values.shape}")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError(f"class ids {values.min()}-{values.max()} do not fit an 8-bit class map (0-255)")
    lut = _class_lut(colours)
    kwargs = _imagej_kwargs(pixel_size_nm)
    kwargs["metadata"]["LUTs"] = [lut]
    with atomic_path(path) as tmp:  # ImageJ reads each ColorMap entry's high byte: 8 bits x 257 keeps them exact
        tifffile.imwrite(tmp, values.astype(np.uint8), colormap=lut.astype(np.uint16) * 257, **kwargs)


def write_mask(path: Path, mask: np.ndarray, pixel_size_nm: float | None) -> None:
    """ImageJ's binary-mask convention: 8-bit, 0 background, 255 foreground."""
    write_tiff(path, np.where(mask, 255, 0).astype(np.uint8), pixel_size_nm)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

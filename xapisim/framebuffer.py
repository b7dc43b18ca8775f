"""What a simulated VM's screen shows: a 640x480 picture that says which VM
it is, for the RFB server of xapisim.handlers.console.

The picture is a solid ``BACKGROUND`` with the VM's name-label in large
white letters, its uuid below, and a status line at the bottom
(``STATUS_BOX``) that counts the seconds since the console opened, so a
viewer's incremental update requests see the screen change. Rendering
uses Pillow and its bundled font; ``render`` is deterministic, so a test
can compare a viewer's screenshot with it pixel for pixel.

Pixels go out in the client's pixel format when it is 32 bits per pixel,
true colour, 8 bits a channel on byte boundaries (what noVNC and most
viewers ask for); other formats are refused (``UnsupportedPixelFormat``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 640, 480
BACKGROUND = (24, 64, 128)
FOREGROUND = (255, 255, 255)
STATUS_COLOUR = (255, 200, 0)
# (left, top, right, bottom) of the part that changes with time
STATUS_BOX = (0, HEIGHT - 48, WIDTH, HEIGHT)
_NAME_SIZE = 44
_SMALL_SIZE = 18


class UnsupportedPixelFormat(ValueError):
    pass


@dataclass(frozen=True)
class PixelFormat:
    bits_per_pixel: int = 32
    depth: int = 24
    big_endian: bool = False
    true_colour: bool = True
    red_max: int = 255
    green_max: int = 255
    blue_max: int = 255
    red_shift: int = 16
    green_shift: int = 8
    blue_shift: int = 0

    _STRUCT = struct.Struct(">BBBBHHHBBB3x")

    def pack(self) -> bytes:
        return self._STRUCT.pack(self.bits_per_pixel, self.depth, int(self.big_endian),
                                 int(self.true_colour), self.red_max, self.green_max,
                                 self.blue_max, self.red_shift, self.green_shift,
                                 self.blue_shift)

    @classmethod
    def unpack(cls, data: bytes) -> PixelFormat:
        v = cls._STRUCT.unpack(data)
        return cls(v[0], v[1], bool(v[2]), bool(v[3]), *v[4:])

    def raw_mode(self) -> str:
        """Pillow's raw mode that lays pixels out in this format."""
        maxes = (self.red_max, self.green_max, self.blue_max)
        shifts = (self.red_shift, self.green_shift, self.blue_shift)
        if (self.bits_per_pixel != 32 or not self.true_colour or maxes != (255, 255, 255)
                or any(s % 8 for s in shifts) or len(set(shifts)) != 3):
            raise UnsupportedPixelFormat(f"pixel format {self} is not supported")
        order = ["X"] * 4
        for channel, shift in zip("RGB", shifts, strict=True):
            byte = shift // 8
            order[3 - byte if self.big_endian else byte] = channel
        mode = "".join(order)
        if mode not in ("RGBX", "BGRX", "XRGB", "XBGR"):
            raise UnsupportedPixelFormat(f"channel order {mode} is not supported")
        return mode


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def render(name: str, uuid: str, seconds: int = 0) -> Image.Image:
    """The VM's screen after ``seconds`` of console time."""
    img = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(img)
    draw.text((32, 120), name or "(no name)", fill=FOREGROUND, font=_font(_NAME_SIZE))
    draw.text((32, 200), uuid, fill=FOREGROUND, font=_font(_SMALL_SIZE))
    draw.text((32, 232), "xapi-sim console", fill=FOREGROUND, font=_font(_SMALL_SIZE))
    draw_status(img, seconds)
    return img


def draw_status(img: Image.Image, seconds: int) -> None:
    draw = ImageDraw.Draw(img)
    draw.rectangle((STATUS_BOX[0], STATUS_BOX[1], STATUS_BOX[2] - 1, STATUS_BOX[3] - 1),
                   fill=BACKGROUND)
    draw.text((32, STATUS_BOX[1] + 12), f"console open for {seconds} s",
              fill=STATUS_COLOUR, font=_font(_SMALL_SIZE))


def pixels(img: Image.Image, box: tuple[int, int, int, int], fmt: PixelFormat) -> bytes:
    """The pixels of ``box`` (left, top, right, bottom), row by row, in
    ``fmt``."""
    return img.crop(box).tobytes("raw", fmt.raw_mode())

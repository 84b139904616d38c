"""Writes fixtures/png/rgba16_10000x10000.png
(python3 scripts/make-rgba16-fixture.py fixtures/png/rgba16_10000x10000.png):
a 10000x10000 16-bit RGBA PNG of smooth gradients (about 1 MB): red
rises along x, green along y, alpha fades along y. Row 0 uses the Sub
filter, every other row Up, so each filtered row is one 8-byte pattern
repeated and deflate squeezes it to almost nothing."""
import struct, sys, zlib

W = H = 10000


def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def green(y):
    return y * 65535 // (H - 1)


def alpha(y):
    return 65535 - y * 32767 // (H - 1)


comp = zlib.compressobj(9)
idat = []
row = bytearray(b'\x01' + struct.pack('>HHHH', 0, green(0), 0x8000, alpha(0)))
previous = 0
for x in range(1, W):
    red = x * 65535 // (W - 1)
    row += struct.pack('>HHHH', (red - previous) & 0xFFFF, 0, 0, 0)
    previous = red
idat.append(comp.compress(bytes(row)))
for y in range(1, H):
    step = struct.pack('>HHHH', 0, (green(y) - green(y - 1)) & 0xFFFF, 0, (alpha(y) - alpha(y - 1)) & 0xFFFF)
    idat.append(comp.compress(b'\x02' + step * W))
idat.append(comp.flush())
png = (b'\x89PNG\r\n\x1a\n'
       + chunk(b'IHDR', struct.pack('>IIBBBBB', W, H, 16, 6, 0, 0, 0))
       + chunk(b'IDAT', b''.join(idat))
       + chunk(b'IEND', b''))
with open(sys.argv[1], 'wb') as f:
    f.write(png)

#!/usr/bin/env python3
"""Writes the smallest well-formed PE32+ console program we need to Authenticode-sign: DOS
header, PE signature, COFF header, a PE32+ optional header with all 16 data directories (the
certificate table among them, empty), and one .text section holding `ret`. Built here, field by
field, so the test ships no binary of unclear origin. Usage: make_pe.py OUT.exe"""
import struct
import sys

FILE_ALIGN = 0x200
SECTION_ALIGN = 0x1000

dos = bytearray(64)
dos[0:2] = b"MZ"
struct.pack_into("<I", dos, 0x3C, len(dos))  # e_lfanew: the PE header follows at once

coff = struct.pack(
    "<HHIIIHH",
    0x8664,  # Machine: x86-64
    1,  # NumberOfSections
    0,  # TimeDateStamp: 0 keeps the file the same on every run
    0,  # PointerToSymbolTable
    0,  # NumberOfSymbols
    240,  # SizeOfOptionalHeader (PE32+ with 16 data directories)
    0x0022,  # EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE
)

optional = struct.pack(
    "<HBBIIIII",
    0x20B,  # PE32+
    1, 0,  # linker version
    FILE_ALIGN,  # SizeOfCode
    0, 0,  # initialized, uninitialized data
    SECTION_ALIGN,  # AddressOfEntryPoint: the ret
    SECTION_ALIGN,  # BaseOfCode
) + struct.pack(
    "<QIIHHHHHHIIIIHHQQQQII",
    0x140000000,  # ImageBase
    SECTION_ALIGN,
    FILE_ALIGN,
    6, 0,  # OS version
    0, 0,  # image version
    6, 0,  # subsystem version
    0,  # Win32VersionValue
    2 * SECTION_ALIGN,  # SizeOfImage: headers + .text
    FILE_ALIGN,  # SizeOfHeaders
    0,  # CheckSum (signing tools fill it in)
    3,  # Subsystem: console
    0x8160,  # DYNAMIC_BASE | HIGH_ENTROPY_VA | NX_COMPAT | TERMINAL_SERVER_AWARE
    0x100000, 0x1000, 0x100000, 0x1000,  # stack and heap reserve/commit
    0,  # LoaderFlags
    16,  # NumberOfRvaAndSizes
) + bytes(16 * 8)
assert len(optional) == 240

text = struct.pack(
    "<8sIIIIIIHHI",
    b".text",
    1,  # VirtualSize: one byte of code
    SECTION_ALIGN,  # VirtualAddress
    FILE_ALIGN,  # SizeOfRawData
    FILE_ALIGN,  # PointerToRawData: right after the headers
    0, 0, 0, 0,
    0x60000020,  # CODE | EXECUTE | READ
)

headers = bytes(dos) + b"PE\0\0" + coff + optional + text
image = headers.ljust(FILE_ALIGN, b"\0") + b"\xc3".ljust(FILE_ALIGN, b"\0")
with open(sys.argv[1], "wb") as f:
    f.write(image)

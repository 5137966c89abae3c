//! PE32+ checks of a kernel driver image and its Authenticode hash, over the `object`
//! crate's PE parser.

use anyhow::{bail, ensure, Context, Result};
use object::pe;
use object::read::pe::{ImageNtHeaders, PeFile64};
use object::LittleEndian as LE;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Offset of `CheckSum` in the optional header (same for PE32 and PE32+).
const CHECKSUM_IN_OPTIONAL: usize = 64;

/// What a driver image is made of, as the checks need it.
#[derive(Debug)]
pub struct Image {
    /// File offset of the optional header's `CheckSum`.
    pub checksum_offset: usize,
    /// `CheckSum` as stored.
    pub checksum: u32,
    /// File offset of the certificate-table data directory entry.
    pub cert_dir_offset: usize,
    /// The certificate table (file offset, size); (0, 0) when unsigned.
    pub cert_table: (usize, usize),
    /// Imports: DLL name (lower case) -> function names.
    pub imports: BTreeMap<String, BTreeSet<String>>,
    /// `Subsystem`.
    pub subsystem: u16,
    /// `DllCharacteristics`.
    pub dll_characteristics: u16,
    /// Base relocation blocks' total size.
    pub reloc_size: u32,
    /// Entry point RVA.
    pub entry: u32,
    /// `Machine`.
    pub machine: u16,
}

/// Parses a PE32+ image (anything else is an error).
pub fn parse(data: &[u8]) -> Result<Image> {
    let file = PeFile64::parse(data).context("not a PE32+ image")?;
    let nt = file.nt_headers();
    let fh = nt.file_header();
    let oh = nt.optional_header();
    let dos = file.dos_header();
    let nt_off = dos.nt_headers_offset() as usize;
    // Signature (4) + COFF file header (20) -> optional header.
    let opt_off = nt_off + 4 + 20;
    let checksum_offset = opt_off + CHECKSUM_IN_OPTIONAL;
    // PE32+ optional header: 112 bytes before the data directories, 8 bytes each.
    let cert_dir_offset = opt_off + 112 + 8 * pe::IMAGE_DIRECTORY_ENTRY_SECURITY;
    let dirs = file.data_directories();
    let cert_table = dirs
        .get(pe::IMAGE_DIRECTORY_ENTRY_SECURITY)
        .map(|d| (d.virtual_address.get(LE) as usize, d.size.get(LE) as usize))
        .unwrap_or((0, 0));
    let reloc_size = dirs
        .get(pe::IMAGE_DIRECTORY_ENTRY_BASERELOC)
        .map(|d| d.size.get(LE))
        .unwrap_or(0);
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(table) = file.import_table()? {
        let mut descs = table.descriptors()?;
        while let Some(d) = descs.next()? {
            let dll = String::from_utf8_lossy(table.name(d.name.get(LE))?).to_ascii_lowercase();
            let names = imports.entry(dll).or_default();
            let mut thunks = table.thunks(d.original_first_thunk.get(LE))?;
            while let Some(t) = thunks.next::<pe::ImageNtHeaders64>()? {
                match table.import::<pe::ImageNtHeaders64>(t)? {
                    object::read::pe::Import::Name(_, n) => {
                        names.insert(String::from_utf8_lossy(n).into_owned());
                    }
                    object::read::pe::Import::Ordinal(o) => {
                        names.insert(format!("#{o}"));
                    }
                }
            }
        }
    }
    Ok(Image {
        checksum_offset,
        checksum: oh.check_sum.get(LE),
        cert_dir_offset,
        cert_table,
        imports,
        subsystem: oh.subsystem.get(LE),
        dll_characteristics: oh.dll_characteristics.get(LE),
        reloc_size,
        entry: oh.address_of_entry_point.get(LE),
        machine: fh.machine.get(LE),
    })
}

/// The PE checksum (imagehlp's `CheckSumMappedFile`): 16-bit one's-complement-style
/// sum of the file with the `CheckSum` field taken as zero, folded, plus the length.
pub fn pe_checksum(data: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < data.len() {
        let word = if i == checksum_offset || i == checksum_offset + 2 {
            0
        } else if i + 1 < data.len() {
            u16::from_le_bytes([data[i], data[i + 1]]) as u64
        } else {
            data[i] as u64
        };
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(data.len() as u32)
}

/// The Authenticode SHA-256 hash of a PE image: every byte up to the certificate
/// table (or the end), less the `CheckSum` field and the certificate-table directory
/// entry, zero-padded to a multiple of 8 (as signtool and osslsigncode hash a linker's
/// image, whose sections follow the headers in file order).
pub fn authenticode_sha256(data: &[u8]) -> Result<[u8; 32]> {
    let img = parse(data)?;
    let end = if img.cert_table.1 != 0 {
        ensure!(
            img.cert_table.0.checked_add(img.cert_table.1) == Some(data.len()),
            "the certificate table is not at the end of the file"
        );
        img.cert_table.0
    } else {
        data.len()
    };
    ensure!(
        img.cert_dir_offset + 8 <= end,
        "headers overlap the certificate table"
    );
    let mut h = Sha256::new();
    h.update(&data[..img.checksum_offset]);
    h.update(&data[img.checksum_offset + 4..img.cert_dir_offset]);
    h.update(&data[img.cert_dir_offset + 8..end]);
    let pad = (8 - end % 8) % 8;
    h.update(&[0u8; 8][..pad]);
    Ok(h.finalize().into())
}

/// `DllCharacteristics` a Sluice driver must carry.
pub const REQUIRED_DLL_CHARACTERISTICS: &[(u16, &str)] = &[
    (pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT, "NX_COMPAT"),
    (pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, "DYNAMIC_BASE"),
    (
        pe::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
        "FORCE_INTEGRITY",
    ),
];

/// Every check of a driver image that needs no other file: PE32+ for AMD64, native
/// subsystem, NX + dynamic base + integrity check, relocations, an entry point, a
/// correct checksum. Returns the image for the import checks.
pub fn check_driver(data: &[u8]) -> Result<Image> {
    let img = parse(data)?;
    ensure!(
        img.machine == pe::IMAGE_FILE_MACHINE_AMD64,
        "machine {:#x}, not AMD64",
        img.machine
    );
    ensure!(
        img.subsystem == pe::IMAGE_SUBSYSTEM_NATIVE,
        "subsystem {}, not native (1)",
        img.subsystem
    );
    for (flag, name) in REQUIRED_DLL_CHARACTERISTICS {
        ensure!(img.dll_characteristics & flag != 0, "{name} is not set");
    }
    ensure!(img.reloc_size > 0, "no base relocations");
    ensure!(img.entry != 0, "no entry point");
    let want = pe_checksum(data, img.checksum_offset);
    ensure!(
        img.checksum == want,
        "checksum {:#x} in the header, {:#x} computed",
        img.checksum,
        want
    );
    Ok(img)
}

/// Export names of a module from an import library (`.a` / `.lib` archive of short
/// import members, as mingw-w64 ships them and llvm-dlltool writes them).
pub fn import_library_exports(archive: &[u8]) -> Result<BTreeSet<String>> {
    let ar = object::read::archive::ArchiveFile::parse(archive).context("not an archive")?;
    let mut names = BTreeSet::new();
    for m in ar.members() {
        let m = m?;
        let data = m.data(archive)?;
        if let Ok(imp) = object::read::coff::ImportFile::parse(data) {
            names.insert(String::from_utf8_lossy(imp.symbol()).into_owned());
        } else if let Ok(sym) = object::read::archive::ArchiveFile::parse(data) {
            let _ = sym;
        }
    }
    if names.is_empty() {
        // GNU (mingw) import libraries hold small COFF objects instead of short import
        // members: take the symbol table of the archive.
        for s in ar.symbols()?.into_iter().flatten() {
            let s = s?;
            let n = String::from_utf8_lossy(s.name());
            if let Some(f) = n.strip_prefix("__imp_") {
                names.insert(f.to_string());
            }
        }
    }
    if names.is_empty() {
        bail!("no exports found in the import library");
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_small_buffers() {
        // Words 0x0201 + 0x0403 = 0x0604, + length 4.
        assert_eq!(pe_checksum(&[1, 2, 3, 4], 100), 0x0604 + 4);
        // The checksum field counts as zero.
        assert_eq!(pe_checksum(&[1, 2, 3, 4], 2), 0x0201 + 4);
        // Carries fold back in.
        assert_eq!(pe_checksum(&[0xff, 0xff, 0x02, 0x00], 100), 0x0002 + 4);
    }

    #[test]
    fn garbage_is_not_a_pe() {
        assert!(parse(b"MZ not really").is_err());
        assert!(check_driver(&[0u8; 512]).is_err());
    }
}

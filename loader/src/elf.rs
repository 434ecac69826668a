//! A look at a library's ELF header before the dynamic linker gets it.
//!
//! Why: glibc's `dlopen` describes a library for another CPU as "cannot
//! open shared object file: No such file or directory" (it skips
//! incompatible objects as if they were not there), and a text file or a
//! macOS build as "invalid ELF header". The first 20 bytes of the file say
//! exactly what is wrong, so the loader reads them and says it:
//! `built for aarch64; this engine is x86_64`.
//!
//! Only the identification bytes, `e_type` and `e_machine` are checked; the
//! dynamic linker still validates everything else. [`mapped_extent`] also
//! reads the program headers, to tell the snapshot how much of the file the
//! dynamic linker uses.
//!
//! Linux only (the loader calls it under `cfg(target_os = "linux")`); the
//! module still compiles, and its unit tests run, everywhere.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use crate::error::LoadErrorKind;

/// How many leading bytes [`check`] looks at.
pub(crate) const HEAD_LEN: usize = 20;

const MAGIC: &[u8; 4] = b"\x7fELF";
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;
const ET_REL: u16 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const ET_CORE: u16 = 4;
const PT_LOAD: u32 = 1;
/// `e_phnum` meaning "more than fit here, see section 0".
const PN_XNUM: u16 = 0xffff;

/// What this engine was built for: ELF class, data encoding and
/// `e_machine` (`None` on a CPU the table below does not know: then only
/// word size and byte order are compared).
fn host() -> (u8, u8, Option<u16>) {
    let class = if cfg!(target_pointer_width = "64") {
        ELFCLASS64
    } else {
        ELFCLASS32
    };
    let data = if cfg!(target_endian = "big") {
        ELFDATA2MSB
    } else {
        ELFDATA2LSB
    };
    let machine = match std::env::consts::ARCH {
        "x86" => Some(3),
        "mips" | "mips64" => Some(8),
        "powerpc" => Some(20),
        "powerpc64" => Some(21),
        "s390x" => Some(22),
        "arm" => Some(40),
        "x86_64" => Some(62),
        "aarch64" => Some(183),
        "riscv32" | "riscv64" => Some(243),
        "loongarch64" => Some(258),
        _ => None,
    };
    (class, data, machine)
}

/// A CPU's usual name, given its `e_machine` and word size.
fn machine_name(machine: u16, class: u8) -> String {
    let wide = class == ELFCLASS64;
    match machine {
        3 => "i386",
        8 if wide => "mips64",
        8 => "mips",
        20 => "powerpc",
        21 => "powerpc64",
        22 if wide => "s390x",
        22 => "s390",
        40 => "arm",
        62 => "x86_64",
        183 => "aarch64",
        243 if wide => "riscv64",
        243 => "riscv32",
        258 => "loongarch64",
        other => return format!("CPU type {other} (ELF e_machine)"),
    }
    .to_owned()
}

fn bits(class: u8) -> &'static str {
    if class == ELFCLASS64 {
        "64-bit"
    } else {
        "32-bit"
    }
}

fn endian(data: u8) -> &'static str {
    if data == ELFDATA2MSB {
        "big-endian"
    } else {
        "little-endian"
    }
}

/// Checks the first bytes of a file (at most [`HEAD_LEN`] are used; fewer
/// if the file is shorter) against this engine.
pub(crate) fn check(head: &[u8]) -> Result<(), LoadErrorKind> {
    check_against(head, host())
}

fn check_against(head: &[u8], host: (u8, u8, Option<u16>)) -> Result<(), LoadErrorKind> {
    if head.len() < MAGIC.len() || &head[..4] != MAGIC {
        return Err(LoadErrorKind::NotElf {
            looks_like: looks_like(head),
        });
    }
    if head.len() < HEAD_LEN {
        return Err(LoadErrorKind::NotSharedObject(format!(
            "truncated ELF header ({} bytes)",
            head.len()
        )));
    }
    let (class, data) = (head[EI_CLASS], head[EI_DATA]);
    if !matches!(class, ELFCLASS32 | ELFCLASS64) || !matches!(data, ELFDATA2LSB | ELFDATA2MSB) {
        return Err(LoadErrorKind::NotSharedObject(format!(
            "invalid ELF identification (class {class}, data encoding {data})"
        )));
    }
    let half = |at: usize| {
        let bytes = [head[at], head[at + 1]];
        if data == ELFDATA2MSB {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        }
    };
    let machine = half(18);
    let (host_class, host_data, host_machine) = host;
    let machine_differs = host_machine.is_some_and(|m| m != machine);
    if machine_differs || class != host_class || data != host_data {
        let mut found = machine_name(machine, class);
        let mut expected = host_machine
            .map(|m| machine_name(m, host_class))
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        // Word size and byte order are named only when they differ.
        let (mut theirs, mut ours) = (Vec::new(), Vec::new());
        if class != host_class {
            theirs.push(bits(class));
            ours.push(bits(host_class));
        }
        if data != host_data {
            theirs.push(endian(data));
            ours.push(endian(host_data));
        }
        if !theirs.is_empty() {
            found = format!("{found} ({})", theirs.join(", "));
            expected = format!("{expected} ({})", ours.join(", "));
        }
        return Err(LoadErrorKind::Machine { found, expected });
    }
    match half(16) {
        ET_DYN => Ok(()),
        ET_EXEC => Err(LoadErrorKind::NotSharedObject(
            "an executable, not a shared library".to_owned(),
        )),
        ET_REL => Err(LoadErrorKind::NotSharedObject(
            "an object file (.o), not a shared library".to_owned(),
        )),
        ET_CORE => Err(LoadErrorKind::NotSharedObject(
            "a core dump, not a shared library".to_owned(),
        )),
        other => Err(LoadErrorKind::NotSharedObject(format!(
            "ELF file of type {other}, not a shared library"
        ))),
    }
}

/// How many leading bytes of the file the dynamic linker uses: the ELF
/// header, the program headers and every loadable segment's file bytes,
/// up to the end of the last one. What follows (symbol tables, debug info,
/// section headers) is never mapped. `None` when `head` (the file's first
/// bytes) does not hold the whole program header table or it makes no
/// sense: the caller then keeps the whole file.
pub(crate) fn mapped_extent(head: &[u8]) -> Option<u64> {
    if head.len() < HEAD_LEN || &head[..4] != MAGIC {
        return None;
    }
    let big = match head[EI_DATA] {
        ELFDATA2LSB => false,
        ELFDATA2MSB => true,
        _ => return None,
    };
    let read = |at: usize, len: usize| -> Option<u64> {
        let bytes = head.get(at..at.checked_add(len)?)?;
        let mut value = 0u64;
        for i in 0..len {
            let byte = if big { bytes[i] } else { bytes[len - 1 - i] };
            value = (value << 8) | u64::from(byte);
        }
        Some(value)
    };
    // (e_phoff, e_phentsize, e_phnum, e_ehsize) offsets and widths, then the
    // header size and (p_offset, p_filesz) offsets and width of an entry.
    let (phoff, phentsize, phnum, ehsize, entry, offset, filesz, word) = match head[EI_CLASS] {
        ELFCLASS64 => (read(32, 8)?, read(54, 2)?, read(56, 2)?, 64, 56, 8, 32, 8),
        ELFCLASS32 => (read(28, 4)?, read(42, 2)?, read(44, 2)?, 52, 32, 4, 16, 4),
        _ => return None,
    };
    if phnum == u64::from(PN_XNUM) || phentsize < entry {
        return None;
    }
    let table_end = phoff.checked_add(phentsize.checked_mul(phnum)?)?;
    if table_end > head.len() as u64 {
        return None;
    }
    let mut extent = table_end.max(ehsize);
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).ok()?;
        if read(at, 4)? == u64::from(PT_LOAD) {
            let end = read(at + offset, word)?.checked_add(read(at + filesz, word)?)?;
            extent = extent.max(end);
        }
    }
    Some(extent)
}

/// What a file that is not ELF looks like, when that is easy to tell.
fn looks_like(head: &[u8]) -> Option<&'static str> {
    const MACH_O: [[u8; 4]; 5] = [
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
        [0xca, 0xfe, 0xba, 0xbe],
    ];
    if head.len() >= 4 && MACH_O.iter().any(|m| head[..4] == m[..]) {
        Some("it is a Mach-O file, built for macOS")
    } else if head.starts_with(b"MZ") {
        Some("it is a PE file, built for Windows")
    } else if !head.is_empty()
        && head
            .iter()
            .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        Some("it looks like text")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86_64: (u8, u8, Option<u16>) = (ELFCLASS64, ELFDATA2LSB, Some(62));

    /// An ELF identification of this class / data / type / machine.
    fn head(class: u8, data: u8, e_type: u16, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; HEAD_LEN];
        h[..4].copy_from_slice(MAGIC);
        h[EI_CLASS] = class;
        h[EI_DATA] = data;
        h[6] = 1;
        let (t, m) = if data == ELFDATA2MSB {
            (e_type.to_be_bytes(), machine.to_be_bytes())
        } else {
            (e_type.to_le_bytes(), machine.to_le_bytes())
        };
        h[16..18].copy_from_slice(&t);
        h[18..20].copy_from_slice(&m);
        h
    }

    fn message(head: &[u8]) -> String {
        check_against(head, X86_64).unwrap_err().to_string()
    }

    #[test]
    fn a_shared_object_for_this_machine_passes() {
        assert!(check_against(&head(ELFCLASS64, ELFDATA2LSB, ET_DYN, 62), X86_64).is_ok());
    }

    #[test]
    fn other_machines_word_sizes_and_byte_orders_are_named() {
        let cases = [
            (
                head(ELFCLASS64, ELFDATA2LSB, ET_DYN, 183),
                "built for aarch64; this engine is x86_64",
            ),
            (
                head(ELFCLASS32, ELFDATA2LSB, ET_DYN, 3),
                "built for i386 (32-bit); this engine is x86_64 (64-bit)",
            ),
            (
                head(ELFCLASS32, ELFDATA2LSB, ET_DYN, 40),
                "built for arm (32-bit); this engine is x86_64 (64-bit)",
            ),
            (
                head(ELFCLASS64, ELFDATA2LSB, ET_DYN, 243),
                "built for riscv64; this engine is x86_64",
            ),
            (
                head(ELFCLASS64, ELFDATA2MSB, ET_DYN, 21),
                "built for powerpc64 (big-endian); this engine is x86_64 (little-endian)",
            ),
            (
                head(ELFCLASS64, ELFDATA2MSB, ET_DYN, 22),
                "built for s390x (big-endian); this engine is x86_64 (little-endian)",
            ),
            (
                head(ELFCLASS32, ELFDATA2LSB, ET_DYN, 62),
                "built for x86_64 (32-bit); this engine is x86_64 (64-bit)",
            ),
            (
                head(ELFCLASS64, ELFDATA2LSB, ET_DYN, 9999),
                "built for CPU type 9999 (ELF e_machine); this engine is x86_64",
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(message(&bytes), expected);
        }
        // A host the table does not know still compares word size.
        let unknown_host = (ELFCLASS64, ELFDATA2LSB, None);
        assert!(check_against(&head(ELFCLASS64, ELFDATA2LSB, ET_DYN, 9999), unknown_host).is_ok());
        assert!(check_against(&head(ELFCLASS32, ELFDATA2LSB, ET_DYN, 3), unknown_host).is_err());
    }

    #[test]
    fn the_mapped_extent_ends_with_the_last_loadable_segment() {
        // A 64-bit header with three program headers: LOAD [0, 0x300),
        // NOTE far away (not mapped), LOAD [0x1000, 0x1800).
        let mut h = head(ELFCLASS64, ELFDATA2LSB, ET_DYN, 62);
        h.resize(64 + 3 * 56, 0);
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&3u16.to_le_bytes());
        for (i, (p_type, offset, size)) in [
            (1u32, 0u64, 0x300u64),
            (4, 0x9000, 0x10),
            (1, 0x1000, 0x800),
        ]
        .into_iter()
        .enumerate()
        {
            let at = 64 + i * 56;
            h[at..at + 4].copy_from_slice(&p_type.to_le_bytes());
            h[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
            h[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
        }
        assert_eq!(mapped_extent(&h), Some(0x1800));
        // The table must be inside the bytes given, and make sense.
        assert_eq!(mapped_extent(&h[..100]), None);
        h[54..56].copy_from_slice(&8u16.to_le_bytes());
        assert_eq!(mapped_extent(&h), None);
        assert_eq!(mapped_extent(b"not an ELF file at all"), None);

        // A real one: this test binary.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let extent = mapped_extent(&exe[..exe.len().min(64 * 1024)]).unwrap();
        assert!(extent > 0 && extent <= exe.len() as u64, "{extent}");
    }

    #[test]
    fn other_files_say_what_they_are() {
        assert_eq!(
            message(b"this is not a library\n"),
            "not a loadable shared library: not an ELF file (it looks like text)"
        );
        assert_eq!(
            message(&[0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]),
            "not a loadable shared library: not an ELF file (it is a Mach-O file, built for macOS)"
        );
        assert_eq!(
            message(b"MZ\x90\x00\x03"),
            "not a loadable shared library: not an ELF file (it is a PE file, built for Windows)"
        );
        assert_eq!(
            message(&[0, 1, 2, 3, 4]),
            "not a loadable shared library: not an ELF file"
        );
        assert_eq!(
            message(b"\x7fELF\x02\x01"),
            "not a loadable shared library: truncated ELF header (6 bytes)"
        );
        assert_eq!(
            message(&head(ELFCLASS64, ELFDATA2LSB, ET_EXEC, 62)),
            "not a loadable shared library: an executable, not a shared library"
        );
        assert_eq!(
            message(&head(ELFCLASS64, ELFDATA2LSB, ET_REL, 62)),
            "not a loadable shared library: an object file (.o), not a shared library"
        );
        assert_eq!(
            message(&head(ELFCLASS64, ELFDATA2LSB, ET_CORE, 62)),
            "not a loadable shared library: a core dump, not a shared library"
        );
        assert_eq!(
            message(&head(7, ELFDATA2LSB, ET_DYN, 62)),
            "not a loadable shared library: invalid ELF identification (class 7, data encoding 1)"
        );
    }
}

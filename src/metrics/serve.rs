//! Where the exposition goes: `/metrics` over HTTP for Prometheus to scrape, or a file for
//! node_exporter's textfile collector.

use std::net::SocketAddr;
use std::path::Path;

use thiserror::Error;

use super::collect::Collector;
use super::encode::{encode, Format};

/// Why metrics could not be served or written.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The listening address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the HTTP server said.
        reason: String,
    },
    /// The stats directory or the output file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The file [`write_textfile`] writes in its directory (node_exporter reads `*.prom`).
pub const TEXTFILE_NAME: &str = "sipguard.prom";

/// Serves `GET /metrics` on `addr` until the process ends, one request at a time, each read
/// fresh from `collector`. OpenMetrics when the scraper's `Accept` asks for it, the Prometheus
/// text format otherwise; `404` for any other path. `ready` is called once listening.
pub fn serve(
    addr: SocketAddr,
    mut collector: Collector,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let server = tiny_http::Server::http(addr).map_err(|e| ServeError::Listen {
        addr,
        reason: e.to_string(),
    })?;
    ready(server.server_addr().to_ip().unwrap_or(addr));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    loop {
        let request = server.recv()?;
        let path = request.url().split('?').next().unwrap_or("");
        let response = if path != "/metrics" {
            text_response(404, "text/plain; charset=utf-8", "try /metrics\n".into())
        } else if *request.method() != tiny_http::Method::Get
            && *request.method() != tiny_http::Method::Head
        {
            text_response(405, "text/plain; charset=utf-8", "GET only\n".into())
        } else {
            let wants_openmetrics = request.headers().iter().any(|h| {
                h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text")
            });
            let format = if wants_openmetrics {
                Format::OpenMetrics
            } else {
                Format::Prometheus
            };
            match rt.block_on(collector.collect()) {
                Ok(view) => text_response(200, format.content_type(), encode(&view, format)),
                Err(e) => text_response(
                    500,
                    "text/plain; charset=utf-8",
                    format!("cannot read the stats directory: {e}\n"),
                ),
            }
        };
        // A scraper that hung up is its own problem, not the server's.
        let _ = request.respond(response);
    }
}

fn text_response(
    status: u16,
    content_type: &str,
    body: String,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .expect("a constant header is valid");
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}

/// Writes `text` (Prometheus text format) to `dir/sipguard.prom`, replaced whole: node_exporter
/// reads the old file or the new one, never half of one. World-readable (node_exporter runs
/// as its own user; metrics hold no secret).
pub fn write_textfile(dir: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    crate::atomicfile::replace_with(dir, TEXTFILE_NAME, |f| {
        f.write_all(text.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
    })
}

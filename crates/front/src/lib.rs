//! What cascade's two hand-written HTTP/1.1 fronts have in common
//! (`docs/architecture.md#serving-the-repository`): the server's connection front
//! (`cascade-server`'s `front/`) and the relay's front door (`cascade-agent`'s
//! `relay/front.rs`). Each front keeps what is its own (the server hands connections to hyper
//! and holds event streams; the relay answers from its cache); this crate holds the parts
//! that were written twice:
//!
//! - [`read_head`]: reading one request head with `httparse`, the header count and head size
//!   limits as parameters;
//! - [`ResponseHead`]: writing a response head, with the `Date` header formatted once a
//!   second per thread;
//! - [`send_file`]: sending part of a file with `sendfile(2)`, optionally paced (bandwidth
//!   caps);
//! - [`parse_range`]: one `Range: bytes=…` header;
//! - [`raise_open_files`]: the soft open-files limit raised to the hard one;
//! - [`listen`]: a listening socket with a backlog sized for bursts of clients, and
//!   [`listen_reuseport`] for several such sockets on one port (one per accepting thread).

mod head;
mod limits;
mod listen;
mod range;
mod response;
#[cfg(target_os = "linux")]
mod sendfile;

pub use head::{read_head, HeadError, HeadLimits};
pub use limits::raise_open_files;
#[cfg(unix)]
pub use listen::listen_reuseport;
pub use listen::{listen, BACKLOG};
pub use range::{parse_range, Unsatisfiable};
pub use response::ResponseHead;
#[cfg(target_os = "linux")]
pub use sendfile::{send_file, Pacing, SendFileError};

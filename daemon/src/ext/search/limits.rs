//! The limits on a search request, each named (STYLE: a limit on everything a client
//! controls). zot (gqlgen) caps the body at 1 MiB, the document at 2,000 tokens and the
//! complexity at 500; berth caps the same things with async-graphql's own measures.

/// Largest request body read (a POST's JSON, or a GET's ignored body).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest GraphQL document (bytes), by GET or POST. zui's and zli's largest queries are
/// under 4 KiB.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Deepest selection nesting. zui's deepest query (image details with history) nests 6.
pub const MAX_DEPTH: usize = 12;
/// Largest complexity (fields selected, counted through lists once), as zot's 500.
pub const MAX_COMPLEXITY: usize = 500;
/// Longest `GlobalSearch` query and filter string (zot's 256).
pub const MAX_SEARCH_TEXT: usize = 256;
/// Searches running at once on the blocking pool: one per core; more wait, in arrival order
/// (never on a shard thread). A search is CPU work: more at once than cores only lengthens
/// every one of them and adds memory (each thread its malloc arena). On 2 cores, 4 at once
/// gave the repository listings a p99 of 33 ms at `-c 10`, one per core 13-15 ms.
pub fn max_concurrent() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get())
}
/// Parsed documents kept for reuse, by their text (zui and zli send the same few dozen
/// queries; parsing one costs as much as answering a small one). A full cache is emptied.
pub const MAX_CACHED_DOCUMENTS: usize = 256;

//! The storage crate's integration tests (one test binary per crate).
//!
//! `conformance` is the storage conformance suite, written once as generic functions over
//! [`Stores`](stepmap_storage::Stores) and run against memory, local files and an S3 server on
//! loopback (s3s + s3s-fs, started in-process). The other modules test readers against
//! features.md §2.3 and the AWS-recorded corpus, batch planning (property tests) and result
//! writers.

mod storage {
    pub mod harness;

    mod conformance;
    mod corpus;
    mod plan_properties;
    mod readers;
    mod result_writer;
}

//! SIGKILL crash test of a multi-threaded gate process (placeholder until the child
//! role lands in this file; see the commit that replaces it).

fn main() {}

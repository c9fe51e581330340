//! The worker side of stepmap. For now: the task invokers that run Task states on this
//! machine (see README.md).

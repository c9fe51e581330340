//! The identity of a coordinator in the Raft group.

use std::fmt;

/// A coordinator's Raft id. Raft reserves 0 for "no node" (raft-rs `INVALID_ID`), so a valid
/// `NodeId` is never 0; [`NodeId::from_raft`] maps 0 to `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u64);

impl NodeId {
    /// A node id; `None` for 0, which Raft uses to mean "none".
    pub fn new(id: u64) -> Option<Self> {
        (id != 0).then_some(Self(id))
    }

    /// The id as raft-rs spells it, where 0 means "no node".
    pub fn from_raft(id: u64) -> Option<Self> {
        Self::new(id)
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::NodeId;

    #[test]
    fn zero_is_not_a_node() {
        assert_eq!(NodeId::new(0), None);
        assert_eq!(NodeId::new(3).map(NodeId::get), Some(3));
        assert_eq!(NodeId::new(3).unwrap().to_string(), "n3");
    }
}

//! A server's lifecycle state, as the admin API and metrics name it.

/// The state of one server of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ServerState {
    Stopped = 0,
    Starting = 1,
    Ready = 2,
    Draining = 3,
    Stopping = 4,
    Failed = 5,
}

impl ServerState {
    pub const ALL: [ServerState; 6] = [
        ServerState::Stopped,
        ServerState::Starting,
        ServerState::Ready,
        ServerState::Draining,
        ServerState::Stopping,
        ServerState::Failed,
    ];

    /// The name used in `/status`, metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Stopped => "stopped",
            ServerState::Starting => "starting",
            ServerState::Ready => "ready",
            ServerState::Draining => "draining",
            ServerState::Stopping => "stopping",
            ServerState::Failed => "failed",
        }
    }

    /// Inverse of `as u8`, for states kept in an atomic.
    pub fn from_u8(v: u8) -> Option<ServerState> {
        Self::ALL.get(v as usize).copied()
    }
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

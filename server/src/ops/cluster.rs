//! The cluster, as an operation: its status as this node sees it, and forming it from the
//! members this node was started with (`--peers`). Admin only; forming is audited.

use super::OpError;
use crate::app::App;
use crate::keys::Principal;

impl App {
    /// The cluster as this node sees it (`GET /v1/cluster`).
    pub fn cluster_status(
        &self,
        principal: &Principal,
    ) -> Result<tandem_actors::ClusterStatus, OpError> {
        self.admin_only(principal, "reading the cluster's status")?;
        Ok(self.system()?.cluster_status())
    }

    /// A digest of this node's applied state at its applied index (`GET /v1/cluster/digest`):
    /// members at the same index with different digests have diverged.
    pub async fn state_digest(&self, principal: &Principal) -> Result<(u64, String), OpError> {
        self.admin_only(principal, "reading the state's digest")?;
        self.system()?
            .state_digest()
            .await
            .map_err(|e| OpError::internal(format!("reading the applied state: {e}")))
    }

    /// Forms the cluster of this node's `--peers` (`POST /v1/cluster/init`); true when this
    /// call formed it, false when it was formed already (a no-op, on any member).
    pub async fn form_cluster(&self, principal: &Principal) -> Result<bool, OpError> {
        self.admin_only(principal, "forming the cluster")?;
        let peers = self.peers.clone().ok_or_else(|| {
            OpError::conflict(
                "not_a_cluster",
                "this node was started without --peers: it is a single node",
            )
        })?;
        let system = self.system()?;
        self.audit(
            principal,
            "cluster_init",
            serde_json::json!({"members": peers.keys().collect::<Vec<_>>()}),
        )?;
        let formed = system
            .form_cluster(peers)
            .await
            .map_err(|why| OpError::unavailable("cluster_unavailable", why))?;
        Ok(formed == tandem_actors::Formed::Now)
    }
}

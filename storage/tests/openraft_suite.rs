//! openraft's own storage conformance suite, run against our log store (raft-log) and state
//! machine (sled): every backend of openraft must pass it.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tandem_storage::log_store::LogStore;
use tandem_storage::state_machine::{CheckpointSettings, StateMachine};
use tandem_storage::types::TandemRaft;

struct FreshStore;

impl StoreBuilder<TandemRaft, LogStore, StateMachine, tempfile::TempDir> for FreshStore {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = LogStore::open(&dir.path().join("log")).expect("log opens");
        let settings = CheckpointSettings {
            cache_bytes: 8 * 1024 * 1024,
            ..CheckpointSettings::default()
        };
        let machine = StateMachine::open(&dir.path().join("state"), settings).expect("state opens");
        Ok((dir, log, machine))
    }
}

#[test]
fn log_store_and_state_machine_pass_openraft_conformance_suite() {
    Suite::test_all(FreshStore).expect("openraft storage suite");
}

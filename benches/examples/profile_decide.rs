//! A fixed workload for instruction-level profiling of decide + apply (callgrind counts
//! instructions, so the figure does not depend on machine load):
//! `valgrind --tool=callgrind target/release/examples/profile_decide`.

use tandem_core::testkit::{self, World, auth, money};
use tandem_core::{
    AccountKind, Actor, Command, CommandBody, DecisionContext, Role, apply_owned, decide,
};

fn main() {
    let mut world = World::open(AccountKind::Joint);
    world.add_member("m2", Role::Owner);
    world.issue_card("c1", "m2");
    world.deposit("owner", money(900_000_000_000, "EUR"));
    let commands: Vec<Command> = (0..4_096)
        .map(|i| Command {
            key: testkit::key(&format!("bench-{i}")),
            actor: Actor::Network,
            body: CommandBody::Authorize {
                authorization: auth(&format!("a{i}")),
                spend: testkit::spend("c1", money(2_500, "EUR")),
                single_message: false,
            },
            references: Vec::new(),
        })
        .collect();
    let ctx = DecisionContext {
        now: world.now,
        rates: &world.rates,
        policy: &world.policy,
    };
    let mut approved = 0u64;
    for _ in 0..25 {
        let mut account = world.account.clone();
        for command in &commands {
            let decision = decide(&account, command, &ctx).expect("decides");
            approved += u64::from(decision.outcome.is_approved());
            for event in decision.events {
                apply_owned(&mut account, event);
            }
        }
    }
    println!("{approved} approvals");
}

//! A fixed workload for instruction-level profiling of decide + apply (callgrind counts
//! instructions, so the figure does not depend on machine load):
//! `valgrind --tool=callgrind target/release/examples/profile_decide`.
//!
//! `profile_decide --open N` runs the settled lifecycle mix instead, on a hot account holding
//! N open holds with its history at its limits (`World::aged`, as the `decide` bench's
//! `decide_apply_open_holds` group); only the mix is counted with
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*run_mix*'`.

use tandem_core::testkit::{self, World, auth, money};
use tandem_core::{
    AccountKind, Actor, Command, CommandBody, DecisionContext, Role, apply_owned, decide,
};

/// 20,000 decisions of the lifecycle mix on `world`'s account; approvals and acceptances.
#[inline(never)]
fn run_mix(world: &World, commands: &[Command]) -> u64 {
    let mut account = world.account.clone();
    let mut answered = 0;
    for (n, command) in commands.iter().cycle().take(20_000).enumerate() {
        let ctx = DecisionContext {
            now: world.now.saturating_add_millis(n as i64),
            rates: &world.rates,
            policy: &world.policy,
        };
        let decision = decide(&account, command, &ctx).expect("decides");
        answered += u64::from(decision.outcome.response_code().as_str() == "00");
        for event in decision.events {
            apply_owned(&mut account, event);
        }
    }
    answered
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--open") {
        let open: usize = args
            .get(at + 1)
            .and_then(|n| n.parse().ok())
            .expect("--open takes a number");
        let world = World::aged(open);
        let commands = testkit::lifecycle_mix("profile", 65_536);
        println!("{} answered 00", run_mix(&world, &commands));
        return;
    }
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

//! A network's other keys: finding the lifecycle a command concerns under any of them, and
//! recording a new lifecycle's free keys as references to it.

use super::*;

/// The command with its lifecycle found under a network's other keys: the first of the
/// body's id and `command.references` that names a lifecycle (directly, through a recorded
/// reference, or as a tombstone) is the one the command concerns. When none does, the body's
/// id stands, and a lifecycle the command opens is opened under it. Borrowed (no copy) unless
/// the id changes.
pub(super) fn resolve_lifecycle<'c>(state: &Account, command: &'c Command) -> Cow<'c, Command> {
    let Some(id) = command.body.lifecycle() else {
        return Cow::Borrowed(command);
    };
    if state.references.is_empty() && command.references.is_empty() {
        return Cow::Borrowed(command);
    }
    let found = std::iter::once(id)
        .chain(&command.references)
        .find_map(|key| {
            if let Some(lifecycle) = state.references.get(key) {
                Some(lifecycle)
            } else if state.authorizations.contains_key(key) || state.tombstones.contains_key(key) {
                Some(key)
            } else {
                None
            }
        });
    match found {
        Some(lifecycle) if lifecycle != id => {
            let mut command = command.clone();
            if let Some(slot) = command.body.lifecycle_mut() {
                *slot = lifecycle.clone();
            }
            Cow::Owned(command)
        }
        _ => Cow::Borrowed(command),
    }
}

/// After a decision that opened the command's lifecycle, records each of the command's other
/// keys that is free as a reference to it.
pub(super) fn record_references(state: &Account, command: &Command, events: &mut Vec<Event>) {
    if command.references.is_empty() {
        return;
    }
    let Some(id) = command.body.lifecycle() else {
        return;
    };
    let opened = !state.authorizations.contains_key(id)
        && events.iter().any(|event| {
            matches!(event, Event::Movement(movement)
                if movement.authorization.as_ref().is_some_and(|a| &a.id == id))
        });
    if !opened {
        return;
    }
    for (n, reference) in command.references.iter().enumerate() {
        let free = reference != id
            && !command.references[..n].contains(reference)
            && !state.references.contains_key(reference)
            && !state.authorizations.contains_key(reference)
            && !state.tombstones.contains_key(reference);
        if free {
            events.push(Event::Referenced {
                reference: reference.clone(),
                authorization: id.clone(),
            });
        }
    }
}

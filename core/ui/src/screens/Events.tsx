// Events: subscriptions with their lag (pending, undelivered, lost), and each
// one's dead letters with replay.
import { useCallback, useState } from "react";
import type { DeadLetter } from "@gen/vivified/admin/v1/event_admin_pb.js";
import { routes } from "../routes";
import { describeError, useLoad, when } from "../ui";
import type { ScreenProps } from "../ui";

export function Events({ client, can }: ScreenProps) {
  const load = useCallback(async () => (await client.call(routes.listSubscriptions, {})).subscriptions, [client]);
  const { data: subscriptions, error, reload } = useLoad(load);
  const [open, setOpen] = useState<{ subscription: string; letters: DeadLetter[] } | null>(null);
  const [result, setResult] = useState("");

  const show = async (subscription: string) => {
    try {
      const reply = await client.call(routes.listDeadLetters, { subscription, limit: 100 });
      setOpen({ subscription, letters: reply.deadLetters });
    } catch (err) {
      setResult(describeError(err));
    }
  };
  const replay = async (subscription: string, ids: string[]) => {
    try {
      const reply = await client.call(routes.replayDeadLetters, { subscription, deadLetterIds: ids });
      setResult(`Replayed ${reply.replayed} dead letter${reply.replayed === 1 ? "" : "s"} of ${subscription}.`);
      await show(subscription);
      await reload();
    } catch (err) {
      setResult(describeError(err));
    }
  };

  return (
    <section aria-labelledby="events-heading">
      <h1 id="events-heading">Events</h1>
      {error && <p role="alert" className="error">{error}</p>}
      <p role="status" aria-live="polite" data-testid="events-result">{result}</p>
      <button type="button" onClick={() => void reload()}>Refresh</button>
      <table>
        <caption>Subscriptions</caption>
        <thead><tr><th scope="col">Subscription</th><th scope="col">Pending</th><th scope="col">Undelivered</th><th scope="col">Lost</th><th scope="col">Actions</th></tr></thead>
        <tbody>{(subscriptions ?? []).map((s) => (
          <tr key={s.subscription} data-subscription={s.subscription}>
            <th scope="row" className="wrap">{s.subscription}</th>
            <td>{String(s.pending)}</td>
            <td data-testid="undelivered">{String(s.undelivered)}</td>
            <td>{String(s.lost)}</td>
            <td>{can.can(routes.listDeadLetters) && (
              <button type="button" onClick={() => void show(s.subscription)}>
                Dead letters<span className="visually-hidden"> of {s.subscription}</span></button>
            )}</td>
          </tr>
        ))}</tbody>
      </table>
      {open && (
        <div className="panel">
          <h2>Dead letters of {open.subscription}</h2>
          {open.letters.length === 0 ? <p data-testid="no-dead-letters">None.</p> : (
            <table data-testid="dead-letters">
              <caption>Dead letters</caption>
              <thead><tr><th scope="col">Id</th><th scope="col">Event type</th><th scope="col">Reason</th><th scope="col">Attempts</th><th scope="col">Dead since</th><th scope="col">Actions</th></tr></thead>
              <tbody>{open.letters.map((d) => (
                <tr key={d.deadLetterId} data-dead-letter={d.deadLetterId}>
                  <th scope="row" className="wrap">{d.deadLetterId}</th>
                  <td>{d.event?.eventType}</td>
                  <td>{d.reason}</td>
                  <td>{d.attempts}</td>
                  <td>{when(d.deadTime)}</td>
                  <td>{can.can(routes.replayDeadLetters) && (
                    <button type="button" onClick={() => void replay(open.subscription, [d.deadLetterId])}>
                      Replay<span className="visually-hidden"> {d.deadLetterId}</span></button>
                  )}</td>
                </tr>
              ))}</tbody>
            </table>
          )}
          {open.letters.length > 1 && can.can(routes.replayDeadLetters) && (
            <button type="button" onClick={() => void replay(open.subscription, open.letters.map((d) => d.deadLetterId))}>Replay all</button>
          )}
        </div>
      )}
    </section>
  );
}

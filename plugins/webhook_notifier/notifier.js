// @ts-check
/**
 * The webhook notifier: a CommunicationPluginService whose messages, and the
 * SecurityAlert / EmailFailed events it subscribes to, are posted as JSON to
 * one webhook through the core's egress proxy (the plugin has no network of
 * its own). Statuses are kept in memory, bounded, by message id: a reused id
 * returns the earlier status instead of posting again.
 *
 * The contract classifies addresses as PII and subject/content as
 * confidential: they go to the webhook (that is the plugin's job) but never
 * to the log. EmailFailed's recipient is PII and is left out of the post.
 */
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "@vivified/sdk";

const DOMAIN = "vivified.communication";
export const COMMUNICATION = "vivified.communication.v1.CommunicationPluginService";
export const SECURITY_ALERT = "vivified.events.v1.SecurityAlert";
export const EMAIL_FAILED = "vivified.events.v1.EmailFailed";
const MAX_MESSAGE_ID = 256;

export class WebhookNotifier {
  /**
   * @param {{ fetch: (request: { method: string, url: string, headers: {name: string, value: string}[], body: Buffer, timeoutSeconds?: number }) => Promise<Record<string, any>> }} egress
   * @param {{ maxMessages?: number, clock?: () => Date, log?: (line: string) => void }} [options]
   */
  constructor(egress, options = {}) {
    this.egress = egress;
    this.maxMessages = options.maxMessages ?? 10_000;
    this.clock = options.clock ?? (() => new Date());
    this.log = options.log ?? ((line) => process.stderr.write(`webhook-notifier: ${line}\n`));
    /** @type {string} */
    this.webhookUrl = "";
    /** @type {Map<string, { status: string, detail: string, time: Date }>} */
    this.statuses = new Map();
  }

  /** @param {string} url */
  configure(url) {
    if (url !== this.webhookUrl) this.log(url ? "webhook configured" : "no webhook configured");
    this.webhookUrl = url;
  }

  /**
   * Post one JSON document; resolves with the HTTP status, throws FailedPreconditionError without a webhook.
   * @param {Record<string, unknown>} document
   */
  async post(document) {
    if (!this.webhookUrl) {
      throw new FailedPreconditionError("no webhook_url is configured for this plugin", { reason: "WEBHOOK_NOT_CONFIGURED", domain: DOMAIN });
    }
    const reply = await this.egress.fetch({
      method: "POST",
      url: this.webhookUrl,
      headers: [{ name: "content-type", value: "application/json" }],
      body: Buffer.from(JSON.stringify(document)),
      timeoutSeconds: 10,
    });
    return Number(reply["status_code"]);
  }

  /** The contract implementation handed to the SDK. */
  contract() {
    return {
      service: COMMUNICATION,
      handlers: {
        /** @param {Record<string, any>} request */
        SendMessage: (request) => this.sendMessage(request),
        /** @param {Record<string, any>} request */
        GetMessageStatus: (request) => this.getMessageStatus(request),
      },
    };
  }

  /** @param {Record<string, any>} request */
  async sendMessage(request) {
    const message = request["message"] ?? {};
    const missing = ["message_id", "to_address", "content"].filter((name) => !message[name]);
    if (missing.length > 0) {
      throw new InvalidArgumentError(`message.${missing.join(", message.")} required`, { reason: "INVALID_REQUEST", domain: DOMAIN });
    }
    if (message.message_id.length > MAX_MESSAGE_ID) {
      throw new InvalidArgumentError(`message.message_id longer than ${MAX_MESSAGE_ID} characters`, { reason: "INVALID_REQUEST", domain: DOMAIN });
    }
    const earlier = this.statuses.get(message.message_id);
    if (earlier !== undefined) return { message_id: message.message_id, status: earlier.status };
    const status = await this.post({
      kind: "message",
      message_id: message.message_id,
      from: message.from_address,
      to: message.to_address,
      subject: message.subject,
      content_type: message.content_type,
      content: message.content,
    });
    const delivered = status >= 200 && status < 300;
    this.remember(message.message_id, delivered ? "DELIVERY_STATUS_DELIVERED" : "DELIVERY_STATUS_FAILED", `webhook answered ${status}`);
    this.log(`message ${JSON.stringify(message.message_id)}: webhook answered ${status}`);
    return { message_id: message.message_id, status: delivered ? "DELIVERY_STATUS_DELIVERED" : "DELIVERY_STATUS_FAILED" };
  }

  /** @param {Record<string, any>} request */
  getMessageStatus(request) {
    const known = this.statuses.get(request["message_id"]);
    if (known === undefined) {
      throw new NotFoundError("no message with this id was sent to this plugin", { reason: "MESSAGE_NOT_FOUND", domain: DOMAIN });
    }
    const ms = known.time.getTime();
    return {
      message_id: request["message_id"],
      status: known.status,
      status_detail: known.detail,
      update_time: { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 },
    };
  }

  /**
   * @param {string} id
   * @param {string} status
   * @param {string} detail
   */
  remember(id, status, detail) {
    this.statuses.set(id, { status, detail, time: this.clock() });
    while (this.statuses.size > this.maxMessages) this.statuses.delete(this.statuses.keys().next().value);
  }

  /** Event handlers: returning acknowledges; throwing (no webhook, webhook not 2xx) asks the core to redeliver. */
  handlers() {
    return {
      /** @param {Record<string, any>} alert @param {{ event: Record<string, any>, attempt: number }} received */
      [SECURITY_ALERT]: async (alert, received) => {
        await this.deliver({
          kind: "security_alert",
          event_id: received.event.event_id,
          source: received.event.source_plugin_id,
          alert_id: alert.alert_id,
          alert_kind: alert.kind,
          severity: alert.severity,
          summary: alert.summary,
          subject: alert.subject,
          details: alert.details,
        }, received.attempt);
      },
      /** @param {Record<string, any>} failed @param {{ event: Record<string, any>, attempt: number }} received */
      [EMAIL_FAILED]: async (failed, received) => {
        await this.deliver({
          kind: "email_failed",
          event_id: received.event.event_id,
          source: received.event.source_plugin_id,
          email_id: failed.email_id,
          error_code: failed.error_code,
          error_message: failed.error_message,
        }, received.attempt);
      },
    };
  }

  /**
   * @param {Record<string, unknown>} document
   * @param {number} attempt
   */
  async deliver(document, attempt) {
    const status = await this.post({ ...document, attempt });
    if (status < 200 || status >= 300) throw new Error(`webhook answered ${status}`);
    this.log(`${document.kind} ${document.event_id} posted (attempt ${attempt})`);
  }
}

// What the signed-in user may do, from WhoAmI's allowed_methods (the server's
// policy decides; the console only hides what it would refuse).
export class Permissions {
  private readonly methods: ReadonlySet<string>;

  constructor(allowed: readonly string[]) {
    this.methods = new Set(allowed);
  }

  can(route: { method: string }): boolean {
    return this.methods.has(route.method);
  }
}

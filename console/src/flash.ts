// A one-time message carried to the next screen (e.g. "Deleted …" after leaving a deleted
// configuration's page).

let pending: string | null = null;

export function flash(message: string): void {
  pending = message;
}

/** The pending message, once. */
export function takeFlash(): string | null {
  const m = pending;
  pending = null;
  return m;
}

// The TOTP provisioning URI as a QR code, drawn as SVG rectangles (no inline
// script, no data: URL, so the strict CSP holds). Encoding by uqr.
import { encode } from "uqr";

export function QrCode({ text, label }: { text: string; label: string }) {
  const { data, size } = encode(text, { ecc: "M", border: 2 });
  const cells: string[] = [];
  data.forEach((row, y) => row.forEach((dark, x) => { if (dark) cells.push(`M${x} ${y}h1v1h-1z`); }));
  return (
    <svg role="img" aria-label={label} viewBox={`0 0 ${size} ${size}`} width="220" height="220"
      shapeRendering="crispEdges" data-testid="mfa-qr" className="qr">
      <rect width={size} height={size} fill="#fff" />
      <path d={cells.join("")} fill="#000" />
    </svg>
  );
}

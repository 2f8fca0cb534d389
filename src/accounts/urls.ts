/** The dashboard page that checkout and the portal return to: `<URL>/dashboard`. */
export function dashboardUrl(appUrl: URL, query: Record<string, string> = {}): string {
  const url = new URL('dashboard', appUrl.href.endsWith('/') ? appUrl : `${appUrl.href}/`);
  for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
  return url.href;
}

// The setup success page's first way: the secret the page shows goes into the token app on
// this phone (same origin, the app's own store), then the app opens. The values come from
// the button's data- attributes; nothing is written but the app's non-extractable key.
'use strict';

(() => {
  const section = document.getElementById('import');
  const button = document.getElementById('import-app');
  if (!section || !button || !window.indexedDB || !window.crypto || !crypto.subtle) return;
  const failed = document.getElementById('import-failed');
  section.hidden = false;
  button.addEventListener('click', async () => {
    const d = button.dataset;
    button.disabled = true;
    failed.hidden = true;
    try {
      await saveSetup({
        secret: d.secret,
        issuer: d.issuer,
        account: d.account,
        period: Number(d.period),
        digits: Number(d.digits),
        algorithm: d.algorithm,
        expires_at: d.expiresAt,
        renewal_available_from: d.renewalAvailableFrom,
      });
    } catch (e) {
      button.disabled = false;
      failed.hidden = false;
      failed.focus();
      return;
    }
    // Replaced, not pushed: going back does not return to the page that shows the key.
    location.replace('/app/#/imported');
  });
})();

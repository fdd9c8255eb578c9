// The token app: initial setup through the e-mailed link, the one-time passwords of every
// token on this phone, and 有効期限更新 from the renewal window on. Tokens are kept by
// store.js (loaded first), which the setup success page's import shares.
'use strict';

async function totp(t, nowMs) {
  const counter = Math.floor(nowMs / 1000 / t.period);
  const msg = new ArrayBuffer(8);
  const view = new DataView(msg);
  view.setUint32(0, Math.floor(counter / 0x100000000));
  view.setUint32(4, counter >>> 0);
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', t.key, msg));
  const off = mac[mac.length - 1] & 0x0f;
  const bin = ((mac[off] & 0x7f) << 24) | (mac[off + 1] << 16) | (mac[off + 2] << 8) | mac[off + 3];
  return String(bin % 10 ** t.digits).padStart(t.digits, '0');
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

function both(ja, en) {
  const p = el('p', {}, ja);
  p.append(el('span', { class: 'en', lang: 'en', text: en }));
  return p;
}

function say(kind, ja, en, id) {
  const m = document.getElementById('message');
  m.replaceChildren();
  if (!kind) return;
  const box = el('div', { class: kind, id: id || 'notice' }, both(ja, en));
  if (kind === 'error') box.setAttribute('role', 'alert');
  m.append(box);
}

function dates(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return [iso, iso];
  const ja = d.toLocaleDateString('ja-JP', { timeZone: 'Asia/Tokyo', year: 'numeric', month: 'long', day: 'numeric' });
  const en = d.toLocaleDateString('en-GB', { timeZone: 'Asia/Tokyo', year: 'numeric', month: 'long', day: 'numeric' });
  return [ja, en];
}

const ERRORS = {
  setup_refused: ['サービスID、ユーザID、または利用開始パスワードが正しくありません。', 'The service ID, user ID or activation password is not correct.'],
  unknown_link: ['このURLは無効です。メールに記載されたURLをもう一度ご確認ください。', 'This link is not valid. Please check the link in the e-mail.'],
  link_gone: ['このURLは使用済みか、有効期限が切れています。', 'This link has already been used or has expired.'],
  attempts_exhausted: ['誤った入力が続いたため、このURLは使用できなくなりました。', 'Too many wrong attempts: this link no longer works.'],
  renewal_not_yet_available: ['有効期限更新はまだお手続きいただけません。', 'Renewal is not open yet.'],
  otp_replayed: ['このワンタイムパスワードは使用済みです。次のパスワードが表示されてから、もう一度お試しください。', 'This one-time password was already used. Try again once the next one shows.'],
  bad_otp: ['ワンタイムパスワードを確認できませんでした。', 'The one-time password could not be confirmed.'],
  locked: ['誤った入力が続いたため、一時停止しています。', 'Locked after too many wrong attempts.'],
  network: ['通信できませんでした。インターネットに接続してからもう一度お試しください。', 'Could not reach the server. Please connect and try again.'],
};

function sayError(code) {
  const [ja, en] = ERRORS[code] || ['お手続きできませんでした。しばらくしてからもう一度お試しください。', 'This could not be done. Please try again later.'];
  say('error', ja, en, 'error');
}

async function postJson(path, body) {
  let r;
  try {
    r = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    return { ok: false, error: 'network' };
  }
  let json = {};
  try { json = await r.json(); } catch (e) { json = {}; }
  return { ok: r.ok, status: r.status, json, error: json.error };
}

function linkCode() {
  const m = location.hash.match(/^#\/setup\/([A-Za-z0-9_-]{16,128})$/);
  if (m) return m[1];
  return new URLSearchParams(location.search).get('code');
}

async function setup(code, form) {
  const body = {
    service_id: form.service_id.value.trim(),
    user_id: form.user_id.value.trim(),
    activation_password: form.activation_password.value,
  };
  if (!body.service_id || !body.user_id || !body.activation_password) {
    say('error', '3つの項目をすべて入力してください。', 'Please fill in all three fields.', 'error');
    return;
  }
  const button = document.getElementById('setup-button');
  button.disabled = true;
  const r = await postJson('/api/v1/enroll/' + encodeURIComponent(code), body);
  button.disabled = false;
  if (!r.ok) {
    form.activation_password.value = '';
    sayError(r.error);
    return;
  }
  await saveSetup(r.json);
  form.reset();
  // The link is spent: drop it from the address bar and the history entry.
  history.replaceState(null, '', '/app/');
  document.getElementById('setup').hidden = true;
  await render();
  say('ok', '初期設定が正常に完了しました', 'Initial setup completed successfully.', 'setup-done');
  document.getElementById('title').focus();
}

async function renew(t, card) {
  const otp = await totp(t, Date.now());
  const r = await postJson('/api/v1/renew', { service_id: t.issuer, user_id: t.account, otp });
  if (!r.ok) {
    sayError(r.error);
    return;
  }
  t.expires_at = r.json.expires_at;
  if (r.json.renewal_available_from) t.renewal_available_from = r.json.renewal_available_from;
  await putToken(t);
  await render();
  const [ja, en] = dates(t.expires_at);
  say('ok', '有効期限を更新しました。新しい有効期限: ' + ja, 'The expiry date has been extended. Valid until ' + en + '.', 'renewed');
  card.querySelector('h3') && card.querySelector('h3').focus();
}

let cards = [];

function tokenCard(t, index) {
  const id = 'token-' + index;
  const card = el('article', { class: 'token', id, 'aria-labelledby': id + '-name' });
  card.append(el('h3', { id: id + '-name', tabindex: '-1', text: t.issuer + ' — ' + t.account }));
  // Announced with its name; the digits stay the element's own text for a screen reader.
  const name = el('p', { class: 'sr', text: 'ワンタイムパスワード / one-time password' });
  const code = el('p', { class: 'code', id: id + '-code' });
  const left = el('p', { class: 'left', id: id + '-left' });
  const bar = el('div', { class: 'bar', 'aria-hidden': 'true' }, el('span'));
  const [ja, en] = dates(t.expires_at);
  const expiry = el('dl', {},
    el('dt', {}, '有効期限 ', el('span', { lang: 'en', text: 'Valid until' })),
    el('dd', { id: id + '-expires', 'data-expires': t.expires_at }, ja, el('span', { class: 'en', lang: 'en', text: en })));
  card.append(name, code, left, bar, expiry);
  const now = Date.now();
  if (now >= Date.parse(t.expires_at)) {
    card.append(both('有効期限が切れています。有効期限更新を行ってください。', 'This token has expired. Please renew it.'));
    card.lastChild.classList.add('expired');
    card.lastChild.id = id + '-expired';
  }
  if (t.renewal_available_from && now >= Date.parse(t.renewal_available_from)) {
    const menu = el('section', { class: 'renew', id: id + '-renewal', 'aria-label': '有効期限更新メニュー / Renewal menu' });
    menu.append(el('h3', {}, '有効期限更新メニュー', el('span', { class: 'en', lang: 'en', text: 'Renewal' })));
    menu.append(both('有効期限が近づいています。ボタンを押すと、表示中のワンタイムパスワードで有効期限を更新します。', 'The expiry date is near. The button renews it with the code shown above.'));
    const b = el('button', { type: 'button', id: id + '-renew' }, '有効期限更新', el('span', { class: 'en', lang: 'en', text: 'Extend the expiry date' }));
    b.addEventListener('click', () => { b.disabled = true; renew(t, card).finally(() => { b.disabled = false; }); });
    menu.append(b);
    card.append(menu);
  }
  // Removing a token from this phone (e.g. after 利用解除) asks once more first.
  const remove = el('button', { type: 'button', class: 'sub', id: id + '-remove' }, 'このトークンを削除', el('span', { class: 'en', lang: 'en', text: 'Remove this token' }));
  const confirm = el('div', { id: id + '-confirm', hidden: '' },
    both('このトークンをこの端末から削除します。元に戻せません。', 'This removes the token from this phone. It cannot be undone.'),
    el('button', { type: 'button', class: 'danger', id: id + '-remove-yes' }, '削除する', el('span', { class: 'en', lang: 'en', text: 'Remove' })),
    el('button', { type: 'button', class: 'sub', id: id + '-remove-no' }, 'やめる', el('span', { class: 'en', lang: 'en', text: 'Keep it' })));
  remove.addEventListener('click', () => { confirm.hidden = false; remove.hidden = true; confirm.querySelector('button').focus(); });
  confirm.querySelector('.sub').addEventListener('click', () => { confirm.hidden = true; remove.hidden = false; remove.focus(); });
  confirm.querySelector('.danger').addEventListener('click', async () => {
    await deleteToken(t.id);
    await render();
    say('ok', 'トークンを削除しました。', 'The token has been removed.', 'removed');
  });
  card.append(remove, confirm);
  return { t, code, left, bar: bar.firstChild, card };
}

async function tick() {
  const now = Date.now();
  for (const c of cards) {
    const p = c.t.period;
    const s = p - (Math.floor(now / 1000) % p);
    const value = await totp(c.t, now);
    if (c.code.textContent !== value) {
      c.code.textContent = value;
      c.code.dataset.step = String(Math.floor(now / 1000 / p));
    }
    c.left.replaceChildren('あと' + s + '秒', el('span', { class: 'en', lang: 'en', text: s + ' s left' }));
    c.bar.style.width = (100 * s / p) + '%';
  }
}

async function render() {
  const tokens = (await allTokens()).sort((a, b) => a.id.localeCompare(b.id));
  const list = document.getElementById('list');
  cards = tokens.map(tokenCard);
  list.replaceChildren(...cards.map((c) => c.card));
  document.getElementById('empty').hidden = tokens.length > 0;
  await tick();
}

async function main() {
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/app/sw.js', { scope: '/app/' }).catch(() => {});
  }
  // Arrived from the setup success page, whose import stored the token.
  const imported = location.hash === '#/imported';
  if (imported) history.replaceState(null, '', '/app/');
  const code = linkCode();
  if (code) {
    const section = document.getElementById('setup');
    section.hidden = false;
    const form = document.getElementById('setup-form');
    form.addEventListener('submit', (ev) => { ev.preventDefault(); setup(code, form); });
  }
  try {
    await render();
  } catch (e) {
    say('error', 'この端末ではトークンを表示できません。', 'This browser cannot show the tokens.', 'error');
  }
  if (imported && cards.length) {
    say('ok', '初期設定が正常に完了しました', 'Initial setup completed successfully.', 'setup-done');
    document.getElementById('title').focus();
  }
  document.body.dataset.ready = '1';
  setInterval(() => { tick(); }, 1000);
}

window.addEventListener('hashchange', () => location.reload());
main();
